#include "nodes/publisher.h"

namespace clickdiff {

Publisher::Publisher(ZmqServer* zmq, KafkaProducer* producer, std::string masks_topic)
    : zmq_(zmq), producer_(producer), masks_topic_(std::move(masks_topic)) {}

Result<uint64_t> Publisher::operator()(v1::MaskResult mask) const {
  const std::string key = MaskTopic(mask.dataset(), mask.image_id());
  uint64_t sequence = zmq_->Publish(mask);
  if (producer_ != nullptr && !masks_topic_.empty()) {
    mask.set_sequence(sequence);
    CLICKDIFF_RETURN_IF_ERROR(producer_->Produce(masks_topic_, key, mask.SerializeAsString()));
  }
  return sequence;
}

}  // namespace clickdiff
