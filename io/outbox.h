// io/outbox.h — records the service owes a Kafka topic (dead letters, model updates), never lost
// and not sent twice because of a crash: Put() adds the record (v1::OutboxRecord) to a store batch,
// which the caller writes together with the offset or state change the record reports; Pump()
// then produces what is written and not yet acknowledged, and deletes what the broker
// acknowledged, noting for each topic partition the offset after the last acknowledged record. A
// record whose delivery failed (a refused topic, a broker down past message.timeout.ms) is
// produced again by a later Pump (no sooner than Open's retry_after). What a crash left in the
// store is read back by Open, which first reads each of its topics from those noted offsets to
// their end (KafkaReader): a record found there (same key and value) had been delivered and is
// deleted, the rest are sent by the first Pump. Only when that read fails (the cluster does not
// answer within kReadBackTimeout) are they all sent, so a consumer may then see one twice; a
// record is never lost. (A delivery that timed out while the broker had in fact written the record,
// librdkafka's "possibly persisted", is also sent again: a broker outage, not a crash, can repeat.)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "base/status.h"
#include "io/kafka_producer.h"
#include "io/store.h"
#include "schemas/events.pb.h"

namespace clickdiff {

class Outbox {
 public:
  static constexpr std::chrono::seconds kRetryAfter{5};
  static constexpr std::chrono::seconds kReadBackTimeout{10};

  // Reads the records outbox `name` left in `store` (Family::kMetadata, keys::OutboxPrefix(name);
  // each writer thread has its own outbox: "intake", "trainer"). Store and producer are not owned
  // and must outlive the outbox. `retry_after`: how long a record whose delivery failed waits
  // before it is produced again. Errors: the store scan failed (a record that does not parse is
  // dropped with a warning). A failed read-back is logged, not an error.
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
  // Per topic and partition, the offset after the last record acknowledged.
  using Acked = std::map<std::pair<std::string, int32_t>, int64_t>;
  Outbox(Store* store, KafkaProducer* producer, std::string name, std::map<std::string, Entry> left,
         uint64_t next, std::chrono::milliseconds retry_after, Acked acked);
  // Deletes from `left` and the store the records found in their topics after `acked`; returns
  // how many. Errors: the topics could not be read, or the store write failed.
  // The positions of what was found replace those in `acked` (and the store's).
  static Result<size_t> DropDelivered(Store* store, KafkaProducer* producer,
                                      const std::string& name, Acked& acked,
                                      std::map<std::string, Entry>& left);

  Store* store_;
  KafkaProducer* producer_;
  std::string name_;
  std::shared_ptr<Acks> acks_;           // shared with the producer's delivery callbacks
  std::map<std::string, Entry> staged_;  // put, not yet pumped
  std::map<std::string, Entry> unsent_;  // written, to produce
  std::map<std::string, Entry> in_flight_;
  uint64_t next_;
  std::chrono::milliseconds retry_after_;
  Acked acked_;
  std::atomic<size_t> pending_{0};
};

}  // namespace clickdiff
