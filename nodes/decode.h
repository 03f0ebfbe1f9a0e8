// nodes/decode.h — first stage of the graph: turns a Kafka record into a typed, validated event
// or a rejection that names the field and the limit (garbage bytes, truncated protobuf, oversized
// payload, bad dimensions or pixel type, truncated PNG, NaN raw pixels, ids that are empty, too
// long or hold characters outside base/ids.h's set, unknown class). Checks that need stored state
// (click inside its image, label size, duplicates) happen at intake.
#pragma once

#include "base/ids.h"
#include "config/config.h"
#include "io/image_codec.h"
#include "nodes/messages.h"

namespace clickdiff {

struct DecodeLimits {
  int64_t max_payload_bytes = 16 << 20;  // whole Kafka record value
  int max_image_side = 4096;
  int num_classes = 2;  // class ids 0..num_classes-1 exist; clicks name 1..num_classes-1
  size_t max_id_bytes = kMaxIdBytes;
};
DecodeLimits DecodeLimitsFrom(const Config& config);

// The pixels of an image event's payload (PNG, raw uint8/uint16/float32; colour kept), no side
// longer than `max_side`. Errors name the payload and what is wrong with it.
Result<Image> DecodePixels(const v1::ImageEvent& event, int max_side);

// Stateless; safe under tbb::flow::unlimited. Never throws: every failure is a Rejected event.
class Decode {
 public:
  Decode(const KafkaTopics& topics, const DecodeLimits& limits);
  // One Decoded per envelope, always (the sequencer downstream counts on it).
  Decoded operator()(const Envelope& envelope) const;

 private:
  std::variant<Tick, Rejected, ImageRecord, v1::ClickEvent, v1::LabelEvent> DecodeRecord(
      const KafkaMessage& message) const;

  KafkaTopics topics_;
  DecodeLimits limits_;
};

}  // namespace clickdiff
