// nodes/dead_letter.h — records a refused event: a DeadLetter (reason, source topic, partition,
// offset, the original bytes, at most kMaxLetterPayload of them) for `<topic><dlq_suffix>`, put in
// the outbox (io/outbox.h) in the same RocksDB batch as the source's next offset, so the stream
// moves on only with the letter kept, and the letter is delivered (once: the outbox reads its
// topic back after a crash) even if the process dies before the broker has it or the broker
// refuses the topic for a while. The reason is also logged.
#pragma once

#include <atomic>

#include "io/outbox.h"
#include "nodes/intake.h"

namespace clickdiff {

// Run from the serial intake node, like the outbox (count() from any thread). Outbox and store
// are not owned.
class DeadLetterSink {
 public:
  // Bytes of the refused record a letter carries (below librdkafka's default 1 MB message limit).
  static constexpr size_t kMaxLetterPayload = size_t{512} * 1024;
  // Bytes of the refused record's key the letter's own key keeps (the key is only for partitioning;
  // the letter holds it whole up to kMaxLetterPayload).
  static constexpr size_t kMaxLetterKey = 1024;

  DeadLetterSink(Outbox* outbox, Store* store, std::string dlq_suffix);
  // Writes the dead letter with the source's next offset in one batch; Pump() sends it. Errors:
  // the store write failed.
  Status operator()(const KafkaMessage& source, const std::string& reason);
  // Adds the dead letter of a record to `batch`, which the caller writes (with the change that
  // refused it); Pump() sends it. For a parked click or label refused later: its offset
  // advanced when it was parked.
  void Add(Store::Batch& batch, const KafkaMessage& source, const std::string& reason);
  void Add(Store::Batch& batch, const v1::PendingEvent& parked, const std::string& reason);
  // Sends what was written (Outbox::Pump).
  Status Pump() { return outbox_->Pump(); }
  uint64_t count() const { return count_.load(); }

 private:
  Outbox* outbox_;
  Store* store_;
  std::string dlq_suffix_;
  std::atomic<uint64_t> count_{0};
};

}  // namespace clickdiff
