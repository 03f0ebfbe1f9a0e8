// Kafka adapters over librdkafka's C API: an embedded Kafka-protocol broker (librdkafka's mock
// cluster on loopback), an idempotent producer whose delivery reports are checked, and a consumer
// in a consumer group, polled by a thread it owns, that starts each assigned partition at the
// offset the caller stored (RocksDB) rather than at a Kafka-committed one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// One consumed record, copied out of librdkafka's buffer.
struct KafkaMessage {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  int64_t timestamp_ms = 0;
};

// A Kafka-protocol broker cluster inside this process (rdkafka_mock.h), listening on 127.0.0.1 at
// ports the OS picks. Real clients (librdkafka, kcat) talk to it over TCP. Not thread-safe to
// construct; the broker itself serves from librdkafka's threads.
class EmbeddedBroker {
 public:
  static Result<std::unique_ptr<EmbeddedBroker>> Start(int brokers);
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // "127.0.0.1:PORT[,127.0.0.1:PORT...]"
  const std::string& bootstrap_servers() const;
  // Creates `topic` with `partitions` partitions (replication 1); an existing topic is OK.
  Status CreateTopic(const std::string& topic, int partitions);

 private:
  struct Impl;
  explicit EmbeddedBroker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Where to connect: config.kafka.bootstrap_servers unless `bootstrap_override` is non-empty.
// Both classes pass config.kafka.properties verbatim to librdkafka (security, SASL, SSL...).

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

// Consumer in group config.group_id with the eager `range` assignor and auto commit off. A thread
// it owns polls continuously (so group membership stays alive while paused) and hands each record
// to `on_message`, in order per partition.
class KafkaConsumer {
 public:
  struct Callbacks {
    // On (re)assignment, for each assigned partition: the next offset to read, as stored by the
    // caller, or nullopt to start at the beginning of the partition. An error stops the consumer.
    std::function<Result<std::optional<int64_t>>(const std::string& topic, int32_t partition)>
        stored_offset;
    // Every record, on the poll thread. Must not block for long: call Pause() instead.
    std::function<void(KafkaMessage message)> on_message;
    // Optional: consumer errors that are not fatal (logged by default) and fatal ones.
    std::function<void(const Status& error)> on_error;
  };

  static Result<std::unique_ptr<KafkaConsumer>> Create(const KafkaConfig& config,
                                                        const std::vector<std::string>& topics,
                                                        Callbacks callbacks,
                                                        const std::string& bootstrap_override = "");
  ~KafkaConsumer();  // Stop()
  KafkaConsumer(const KafkaConsumer&) = delete;
  KafkaConsumer& operator=(const KafkaConsumer&) = delete;

  // Subscribes and starts the poll thread.
  Status Start();
  // Thread-safe. Pause: no more records are handed over (already fetched ones are not lost: after
  // Resume, reading continues right after the last record handed to on_message). Polling goes on.
  void Pause();
  void Resume();
  bool paused() const;
  // Stops the poll thread and closes the consumer (leaves the group). Idempotent.
  void Stop();
  // Records handed to on_message so far.
  uint64_t received() const;

 private:
  struct Impl;
  explicit KafkaConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
