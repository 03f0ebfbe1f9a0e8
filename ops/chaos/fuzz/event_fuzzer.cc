// Fuzz target: a Kafka record through the graph's first stage (nodes/decode.h). The first byte
// picks the topic (images, clicks, labels or one the service does not read), the rest is the
// record's value: protobuf events, and inside them PNG and raw payloads and dense label maps.
// Decode must turn every input into an event or a rejection: never crash, throw or halt.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "nodes/decode.h"

namespace {

const clickdiff::Decode& Decoder() {
  static const clickdiff::Decode decode = [] {
    clickdiff::DecodeLimits limits;
    limits.max_payload_bytes = 1 << 20;
    limits.max_image_side = 1024;
    limits.num_classes = 4;
    return clickdiff::Decode(clickdiff::KafkaTopics{}, limits);
  }();
  return decode;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const clickdiff::KafkaTopics topics;
  const std::string names[] = {topics.images, topics.clicks, topics.labels, "elsewhere"};
  clickdiff::KafkaMessage message;
  message.topic = names[data[0] % 4];
  message.value.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  clickdiff::Envelope envelope;
  envelope.seq = 1;
  envelope.input = message;
  const clickdiff::Decoded decoded = Decoder()(envelope);
  // Memory is the only failure decode may report instead of a rejection.
  if (!decoded.failure.ok()) std::abort();
  return 0;
}
