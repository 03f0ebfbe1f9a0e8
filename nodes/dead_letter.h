// nodes/dead_letter.h — records a refused event: a DeadLetter (reason, source topic, partition,
// offset, the original bytes) produced to `<topic><dlq_suffix>`, then the source offset stored so
// the stream moves on. Nothing is dropped silently: the reason is also logged.
#pragma once

#include <atomic>

#include "io/kafka_producer.h"
#include "nodes/intake.h"

namespace clickdiff {

// Thread-safe (the producer is; counters are atomic). Producer and store are not owned.
class DeadLetterSink {
 public:
  DeadLetterSink(KafkaProducer* producer, Store* store, std::string dlq_suffix);
  // Produces the dead letter and, when `advance_offset`, stores the source's next offset.
  // Errors: the store write failing (the producer's delivery errors surface in its Flush).
  Status operator()(const KafkaMessage& source, const std::string& reason,
                    bool advance_offset = true);
  // A parked click that was refused later (its offset advanced when it was parked).
  Status operator()(const v1::PendingClick& parked, const std::string& reason);
  uint64_t count() const { return count_.load(); }

 private:
  KafkaProducer* producer_;
  Store* store_;
  std::string dlq_suffix_;
  std::atomic<uint64_t> count_{0};
};

}  // namespace clickdiff
