// io/outbox.h — records the service owes a Kafka topic (dead letters, model updates), delivered at
// least once and never lost: Put() adds the record (v1::OutboxRecord) to a store batch, which the
// caller writes together with the offset or state change the record reports; Pump() then produces
// what is written and not yet acknowledged, and deletes what the broker acknowledged. A record
// whose delivery failed (a refused topic, a broker down past message.timeout.ms) is produced again
// by a later Pump (no sooner than Open's retry_after); what a crash left in the store is read back
// by Open and sent by the first Pump. A consumer may therefore see a record twice, never zero
// times.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "base/status.h"
#include "io/kafka_producer.h"
#include "io/store.h"
#include "schemas/events.pb.h"

namespace clickdiff {

class Outbox {
 public:
  static constexpr std::chrono::seconds kRetryAfter{5};

  // Reads the records outbox `name` left in `store` (Family::kMetadata, keys::OutboxPrefix(name);
  // each writer thread has its own outbox: "intake", "trainer"). Store and producer are not owned
  // and must outlive the outbox. `retry_after`: how long a record whose delivery failed waits
  // before it is produced again. Errors: the store scan failed (a record that does not parse is
  // dropped with a warning).
  static Result<std::unique_ptr<Outbox>> Open(Store* store, KafkaProducer* producer,
                                              const std::string& name,
                                              std::chrono::milliseconds retry_after = kRetryAfter);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Adds a record for `topic` to `batch`. It is produced by the first Pump() after the caller
  // wrote the batch (if the write failed, Pump finds it missing and forgets it). Put and Pump
  // run on the owner's one thread (the intake node, the trainer); pending() on any.
  void Put(Store::Batch& batch, const std::string& topic, const std::string& key,
           const std::string& value);
  // Deletes the records the broker acknowledged, then produces those written and not yet in
  // flight. A full producer queue is not an error: what did not fit goes next time. Errors: the
  // store write failed; the producer failed for good (kInternal).
  Status Pump();
  // Only the first half of Pump: deletes what the broker acknowledged and marks failures for a
  // later try, producing nothing (at stop, after the producer's last flush, so that a restart
  // does not send acknowledged records again). Errors: the store write failed.
  Status Settle();
  // Records written (or put) and not yet acknowledged.
  size_t pending() const;

 private:
  struct Acks;
  struct Entry {
    v1::OutboxRecord record;
    std::chrono::steady_clock::time_point not_before;  // after a failed delivery
  };
  Outbox(Store* store, KafkaProducer* producer, std::string name, std::map<std::string, Entry> left,
         uint64_t next, std::chrono::milliseconds retry_after);

  Store* store_;
  KafkaProducer* producer_;
  std::string name_;
  std::shared_ptr<Acks> acks_;           // shared with the producer's delivery callbacks
  std::map<std::string, Entry> staged_;  // put, not yet pumped
  std::map<std::string, Entry> unsent_;  // written, to produce
  std::map<std::string, Entry> in_flight_;
  uint64_t next_;
  std::chrono::milliseconds retry_after_;
  std::atomic<size_t> pending_{0};
};

}  // namespace clickdiff
