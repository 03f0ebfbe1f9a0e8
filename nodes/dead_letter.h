// nodes/dead_letter.h — records a refused event: a DeadLetter (reason, source topic, partition,
// offset, the original bytes, at most kMaxLetterPayload of them) produced to `<topic><dlq_suffix>`,
// then the source offset stored so the stream moves on. The reason is also logged. When the letter
// cannot be queued the offset is not stored, so the event is refused again after a restart.
#pragma once

#include <atomic>

#include "io/kafka_producer.h"
#include "nodes/intake.h"

namespace clickdiff {

// Thread-safe (the producer is; counters are atomic). Producer and store are not owned.
class DeadLetterSink {
 public:
  // Bytes of the refused record a letter carries (below librdkafka's default 1 MB message limit).
  static constexpr size_t kMaxLetterPayload = size_t{512} * 1024;

  DeadLetterSink(KafkaProducer* producer, Store* store, std::string dlq_suffix);
  // Queues the dead letter and then, when `advance_offset`, stores the source's next offset.
  // Errors: the letter could not be queued (producer queue full for 5 s, fatal producer error), or
  // the store write failed. Delivery failures after queueing surface in the producer's Flush.
  Status operator()(const KafkaMessage& source, const std::string& reason,
                    bool advance_offset = true);
  // A parked click or label that was refused later (its offset advanced when it was parked).
  Status operator()(const v1::PendingEvent& parked, const std::string& reason);
  uint64_t count() const { return count_.load(); }

 private:
  KafkaProducer* producer_;
  Store* store_;
  std::string dlq_suffix_;
  std::atomic<uint64_t> count_{0};
};

}  // namespace clickdiff
