// io/kafka_producer.h — an idempotent Kafka producer over librdkafka's C API.
// Where to connect: config.kafka.bootstrap_servers unless `bootstrap_override` is non-empty.
// It passes config.kafka.properties verbatim to librdkafka (security, SASL, SSL...).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// Idempotent producer (enable.idempotence=true, acks=all). Thread-safe.
class KafkaProducer {
 public:
  static Result<std::unique_ptr<KafkaProducer>> Create(const KafkaConfig& config,
                                                       const std::string& bootstrap_override = "");
  ~KafkaProducer();  // flushes for up to 10 s, then logs what was not delivered
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // Queues one record; returns an error at once when the queue is full or the producer has hit a
  // fatal error. Delivery failures are reported by the next Flush.
  Status Produce(const std::string& topic, const std::string& key, const std::string& value);
  // Waits until every queued record is delivered or `timeout` passes. Returns the first delivery
  // error since the last Flush (naming topic and reason), a fatal error, or a timeout.
  Status Flush(std::chrono::milliseconds timeout);
  // Records delivered and failed so far.
  uint64_t delivered() const;
  uint64_t failed() const;

 private:
  struct Impl;
  explicit KafkaProducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
