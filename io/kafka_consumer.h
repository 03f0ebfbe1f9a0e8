// io/kafka_consumer.h — a Kafka consumer-group member over librdkafka's C API whose partitions
// start at offsets the caller stored (RocksDB), polled by a thread it owns.
// Where to connect: config.kafka.bootstrap_servers unless `bootstrap_override` is non-empty.
// It passes config.kafka.properties verbatim to librdkafka (security, SASL, SSL...).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// kafka.instance_id as a consumer takes it (config.h): "auto" becomes
// "<client_id>-<host name>-<store_identity>" in external mode, with characters Kafka refuses in an
// instance id turned into '_' and at most 249 of them, and empty (dynamic membership) in embedded
// mode; any other value comes back unchanged.
std::string ResolveInstanceId(const Config& config, std::string_view store_identity);

// One consumed record, copied out of librdkafka's buffer.
struct KafkaMessage {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  int64_t timestamp_ms = 0;
};

// Consumer in group config.group_id with the eager `range` assignor and auto commit off, a static
// member named config.instance_id when that is not empty, and a session timeout of 10 s unless
// config.properties sets session.timeout.ms (a broker that ignores instance ids, such as the
// embedded one, then waits at most that long for a killed member before handing its partitions
// on). A thread
// it owns polls continuously (so group membership stays alive while paused) and hands each record
// to `on_message`, in order per partition. Nothing is committed to Kafka: the caller's stored
// offsets are the only position (auto.offset.reset=earliest applies when one is out of range).
// Callbacks run on the poll thread, except that Stop() runs the final revoke and any error
// reports of the close on its caller's thread. Callbacks may call Pause/Resume/paused/received
// and Stop; they must not destroy the consumer.
class KafkaConsumer {
 public:
  struct Callbacks {
    // On (re)assignment, for each assigned partition: the next offset to read, as stored by the
    // caller, or nullopt to start at the beginning of the partition. An error (or a negative
    // offset, or an exception) stops the consumer and is reported to on_error.
    std::function<Result<std::optional<int64_t>>(const std::string& topic, int32_t partition)>
        stored_offset;
    // Every record, on the poll thread. Must not block for long: call Pause() instead. An
    // exception it throws stops the consumer (no later record is handed over, so the caller never
    // stores an offset past this one) and is reported to on_error as kInternal.
    std::function<void(KafkaMessage message)> on_message;
    // Optional: the partition has been read to its end for now (librdkafka's end-of-partition
    // event, once each time the consumer catches up), on the poll thread after the partition's
    // last record was handed over. A record handed over later means it is no longer at its end.
    std::function<void(const std::string& topic, int32_t partition)> on_end;
    // Optional: consumer errors that are not fatal (Unavailable; logged by default) and fatal ones
    // (Internal, or stored_offset's error), after which the poll loop has stopped.
    std::function<void(const Status& error)> on_error;
  };

  // Errors (InvalidArgument): no topics, empty group id, an instance id still "auto" (see
  // ResolveInstanceId), stored_offset/on_message unset, no bootstrap servers, a property
  // librdkafka rejects (named), or one the consumer sets itself (bootstrap.servers, client.id,
  // group.id, group.instance.id, partition.assignment.strategy, enable.auto.commit,
  // enable.auto.offset.store, enable.partition.eof) given in config.properties.
  static Result<std::unique_ptr<KafkaConsumer>> Create(const KafkaConfig& config,
                                                       const std::vector<std::string>& topics,
                                                       Callbacks callbacks,
                                                       const std::string& bootstrap_override = "");
  ~KafkaConsumer();  // Stop()
  KafkaConsumer(const KafkaConsumer&) = delete;
  KafkaConsumer& operator=(const KafkaConsumer&) = delete;

  // Subscribes and starts the poll thread. FailedPrecondition when called twice or after Stop.
  Status Start();
  // Thread-safe. Pause: no more records are handed over (already fetched ones are not lost: after
  // Resume, reading continues right after the last record handed to on_message). Polling goes on.
  // Called inside on_message, the very next record waits for Resume; from another thread, a
  // record already being handed over may still arrive. Takes effect within one poll interval
  // (50 ms), and survives rebalances.
  void Pause();
  void Resume();
  bool paused() const;
  // Stops the poll thread and closes the consumer (leaves the group). Idempotent. From inside a
  // callback it only ends the poll loop; the destructor (or a later Stop) joins and closes.
  void Stop();
  // Records handed to on_message so far.
  uint64_t received() const;
  // Offsets passed over: a partition's next record came after the position (the stored offset,
  // or the record before it), so the records between were never handed over - the broker had
  // deleted them (retention) before they were read, or they were transaction markers. More than
  // one at a time is logged as an error naming the partition and the offsets.
  uint64_t skipped() const;
  // The id of the cluster the consumer reads (from the broker's metadata; waits up to `timeout`
  // for it), empty when the broker gives none. Thread-safe, and callable from stored_offset.
  std::string cluster_id(std::chrono::milliseconds timeout) const;
  // Polls that returned no record (each waits up to 50 ms): once it has grown by a few, whatever
  // the broker had for this consumer was handed over (or held while paused). Tests wait on it to
  // show that nothing more comes.
  uint64_t idle_polls() const;

 private:
  struct Impl;
  explicit KafkaConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
