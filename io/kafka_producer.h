// io/kafka_producer.h — an idempotent Kafka producer over librdkafka's C API.
// Where to connect: config.kafka.bootstrap_servers unless `bootstrap_override` is non-empty.
// It passes config.kafka.properties verbatim to librdkafka (security, SASL, SSL...).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "config/config.h"
#include "io/kafka_reader.h"

namespace clickdiff {

// Idempotent producer (enable.idempotence=true, acks=all). Thread-safe. A thread it owns serves
// delivery reports (so delivered()/failed() advance without calls); the destructor joins it.
class KafkaProducer {
 public:
  // client.id is config.client_id. Errors (InvalidArgument, naming the property): no bootstrap
  // servers; a property librdkafka rejects; a property the producer sets itself
  // (bootstrap.servers, client.id, enable.idempotence, acks) given in config.properties.
  static Result<std::unique_ptr<KafkaProducer>> Create(const KafkaConfig& config,
                                                       const std::string& bootstrap_override = "");
  ~KafkaProducer();  // flushes for up to 10 s, then logs what was not delivered
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // Queues one record (copied); returns an error at once when the queue is full
  // (ResourceExhausted) or the producer has hit a fatal error (Internal: recreate it). An empty
  // key is sent as a null key (spread by the partitioner). Delivery failures (e.g. past
  // message.timeout.ms) are reported by the next Flush.
  Status Produce(const std::string& topic, const std::string& key, const std::string& value);
  // As Produce; when it returns OK, `on_delivery` runs once, on the producer's thread, when the
  // record's fate is known: OK once the broker acknowledged it, else why not (a failure is also
  // counted and reported by Flush as above; records still queued when the producer is destroyed
  // are reported as failed), with where it landed (an acknowledged record: its partition and
  // offset; else -1 both). It must not block or call back into the producer.
  struct Landed {
    int32_t partition = -1;
    int64_t offset = -1;
  };
  using DeliveryCallback = std::function<void(const Status& delivery, const Landed& at)>;
  Status Produce(const std::string& topic, const std::string& key, const std::string& value,
                 DeliveryCallback on_delivery);
  // Waits until every queued record is delivered or `timeout` passes. Returns the first delivery
  // error since the last Flush (Unavailable, naming topic and reason), a fatal error (Internal),
  // or a timeout (Unavailable, with the count still queued).
  Status Flush(std::chrono::milliseconds timeout);
  // A reader of the same cluster with the same client settings (KafkaReader::Create's errors).
  Result<std::unique_ptr<KafkaReader>> NewReader() const;
  // Records delivered and failed so far.
  uint64_t delivered() const;
  uint64_t failed() const;

 private:
  struct Impl;
  explicit KafkaProducer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
