// nodes/intake_stage.h — the graph's serial intake stage: each decoded event goes to its intake
// (image, click or label) or, refused, to the dead-letter sink; each writes the event's effect
// with the record's next offset in one RocksDB batch, in consumption order. A new click's updated
// fresh-click record (nodes/click_intake.h) is then produced on the metrics topic, keyed
// `<dataset>/v<version>/clicks` (the evaluator's per-version aggregate is `<dataset>/v<version>`).
// After each event (and tick) the dead-letter outbox is pumped: what the event wrote goes out,
// what the broker acknowledged is deleted.
//
// The first failure (a store write, the producer failing for good, or an event that could not be
// decoded for want of memory: Decoded::failure) halts the stage:
// nothing more is written, so no later offset can skip the failed event, and a restart reads it
// again. Run it in ONE flow::serial node; counters() and failure() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "io/kafka_producer.h"
#include "io/outbox.h"
#include "io/store.h"
#include "nodes/click_intake.h"
#include "nodes/dead_letter.h"
#include "nodes/image_intake.h"
#include "nodes/intake.h"
#include "nodes/label_intake.h"
#include "nodes/messages.h"

namespace clickdiff {

struct IntakeCounters {
  uint64_t applied = 0;  // events through intake, duplicates and dead letters included
  uint64_t duplicates = 0;
  uint64_t dead_letters = 0;
  StoredCounts stored;  // records in the store (counted once at start, then kept up to date)
};

class IntakeStage {
 public:
  // Called with an image's key (io/keys.h) after an event wrote that image's records (the image,
  // a click or a label; also one still waiting for its image). Must not block.
  using OnStored = std::function<void(const std::string& image_key)>;

  // Store, producer (for the fresh-click metrics; may be null) and outbox (dead letters) are not
  // owned and must outlive the stage. `stored` is what the store holds now (CountStored).
  // `on_stored` may be empty. keep_curve_versions: ClickIntake's.
  IntakeStage(Store* store, KafkaProducer* producer, Outbox* outbox, const KafkaTopics& topics,
              const LimitsConfig& limits, StoredCounts stored, OnStored on_stored,
              uint64_t keep_curve_versions = 0);

  // The records of the reported kinds in `store` (a scan of each family: call it at start only).
  static Result<StoredCounts> CountStored(const Store& store);

  // Applies one event (a tick expires clicks that waited too long for their image) and returns
  // the masks to draw again. Never throws; after a failure it does nothing.
  std::vector<InferRequest> operator()(const Decoded& event);

  IntakeCounters counters() const;
  // OK, or the failure that halted the stage.
  Status failure() const;

 private:
  Result<std::vector<InferRequest>> Apply(const Decoded& event);
  void Halt(const Status& status);

  KafkaProducer* producer_;    // may be null
  std::string metrics_topic_;  // fresh-click records (ClickIntake); empty: not produced
  std::string images_topic_;   // its records' progress decides when pending clicks expire
  DeadLetterSink dead_letters_;
  ClickIntake click_intake_;
  ImageIntake image_intake_;
  LabelIntake label_intake_;
  OnStored on_stored_;
  std::atomic<bool> halted_{false};
  // Ticks expire pending clicks by scanning every one; with many waiting (a backlog whose clicks
  // outran their images) the scans are spaced so that they take at most a tenth of intake's time
  // (10 s apart at most). Apply only (serial).
  std::chrono::steady_clock::time_point next_expiry_;
  mutable std::mutex mu_;
  IntakeCounters counters_;  // GUARDED_BY(mu_), but dead_letters (the sink's own count)
  Status failure_;           // GUARDED_BY(mu_): the first failure
};

}  // namespace clickdiff
