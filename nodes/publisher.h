// nodes/publisher.h — sends a finished mask to subscribers: ZeroMQ always (topic
// mask.<dataset>.<image_id>, sequence-numbered, current mask kept for late subscribers) and the
// Kafka `masks` topic when one is configured.
#pragma once

#include "io/kafka_producer.h"
#include "io/zmq_server.h"

namespace clickdiff {

// Thread-safe (ZmqServer and KafkaProducer are). Neither is owned; producer may be null.
class Publisher {
 public:
  Publisher(ZmqServer* zmq, KafkaProducer* producer, std::string masks_topic);
  // Returns the sequence number the mask went out with. Errors: queueing to Kafka failed.
  Result<uint64_t> operator()(v1::MaskResult mask) const;

 private:
  ZmqServer* zmq_;
  KafkaProducer* producer_;
  std::string masks_topic_;
};

}  // namespace clickdiff
