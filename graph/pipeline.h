// graph/pipeline.h — the service's oneTBB flow graph (docs/architecture.md, "Data flow"):
//
//   Admit/Tick -> queue -> limiter(max_in_flight) -> decode (unlimited) -> preprocess (unlimited)
//     -> sequencer (consumption order) -> intake (serial: nodes/intake_stage.h; each effect +
//        offset in one RocksDB batch) --done--> limiter.decrement
//                                        --infer--> gate (one waiting request per image)
//     -> sampler (async_node over nodes/sampler_pool.h: threads outside TBB's workers, so minutes
//        of LibTorch work never starve the graph; waiting requests taken by priority)
//     -> aggregate (unlimited) -> publish (serial: nodes/publish_stage.h: cache, ZeroMQ, evaluate)
//
// Concurrency is chosen per stage: decoding and preprocessing are pure and run in parallel; intake
// is serial because it reads-then-writes the store and must store offsets in order (the sequencer
// restores the order the parallel stages lose); publishing is serial so an image's masks reach the
// cache and subscribers in the order they finish. Backpressure: events admitted but not through
// intake are counted, with their records' bytes; at limits.max_in_flight events or
// limits.max_in_flight_mb MiB `on_saturation(true)` asks the consumer to pause, and at half of both
// `on_saturation(false)` to resume.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "config/config.h"
#include "io/kafka_producer.h"
#include "io/store.h"
#include "io/zmq_server.h"
#include "learning/model_slot.h"
#include "model/aggregator.h"
#include "nodes/intake.h"
#include "nodes/messages.h"

namespace clickdiff {

// Collaborators, not owned; they must outlive the Pipeline. `producer` serves dead letters, the
// metrics topic and the optional masks topic.
struct PipelineDeps {
  Store* store = nullptr;
  KafkaProducer* producer = nullptr;
  ZmqServer* zmq = nullptr;
  const ModelSlot* models = nullptr;
  // Optional. Called from the intake thread with an image's key (io/keys.h) after an event wrote
  // that image's records (the image, a click or a label; also one still waiting for its image):
  // the continuous trainer reads them again (ContinuousTrainer::Touch). Must not block.
  std::function<void(const std::string& image_key)> on_stored;
  // Optional. Called with true when the events in flight reach limits.max_in_flight or their bytes
  // limits.max_in_flight_mb, and false when both are back to half, in decision order, under an
  // internal lock: it must not block or call back into the Pipeline (KafkaConsumer::Pause/Resume
  // only set a flag).
  std::function<void(bool saturated)> on_saturation;
  // Optional. Called from the publish stage with an image's key after a final mask drawn with
  // clicks became its current mask (ContinuousTrainer::TouchMask). Must not block; it may run
  // while on_stored does.
  std::function<void(const std::string& image_key)> on_mask_stored;
};

struct PipelineCounters {
  uint64_t admitted = 0;  // events admitted (ticks excluded)
  uint64_t applied = 0;   // events through intake, duplicates and dead letters included
  uint64_t duplicates = 0;
  uint64_t dead_letters = 0;
  StoredCounts stored;     // images, clicks and labels in the store
  uint64_t masks = 0;      // masks published, previews included
  uint64_t previews = 0;   // of which previews (a click's first answer)
  uint64_t evaluated = 0;  // published masks scored against an evaluation label
  uint64_t cache_hits = 0;
  uint64_t sample_errors = 0;
  uint64_t in_flight = 0;        // admitted, not through intake
  uint64_t in_flight_bytes = 0;  // their records' bytes (topic, key and value)
  uint64_t infer_waiting = 0;
};

class Pipeline {
 public:
  // Builds and activates the graph and starts `config.sampler.shards` sampler threads.
  // `aggregator` decides masks (config/model_options.h MakeAggregator). Counts the stored images,
  // clicks and labels once. Errors: a missing collaborator; the store's.
  static Result<std::unique_ptr<Pipeline>> Create(const Config& config, PipelineDeps deps,
                                                  model::Aggregator aggregator);
  ~Pipeline();  // Drain()
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Thread-safe. Hands one consumed record to the graph (the consumer's poll thread calls it).
  void Admit(KafkaMessage message);
  // Thread-safe. Lets intake expire clicks that waited too long for their image.
  void Tick();
  // Thread-safe. The consumer read images partition `partition` to its end (an end-of-partition
  // event): once every images partition is, ticks tell intake since when, and pending clicks
  // whose image has not come by then start to expire (nodes/click_intake.h).
  void ImagesAtEnd(int32_t partition);
  // Thread-safe. The consumer was assigned images partition `partition`: not at its end until
  // its first end event. (A partition revoked later still counts: with several consumers of one
  // group, clicks may then wait for event time alone.)
  void ImagesAssigned(int32_t partition);
  // Thread-safe, returns at once. Asks for the masks of every stored image whose cached mask is
  // missing or stale for the served model version (nodes/stale_masks.h): at start, and after
  // each new version. A thread of the pipeline reads the sweep a page at a time (1,024 requests;
  // the first at once, each next once fewer than 256 wait) and logs a failure (the sweep then
  // stops until the next call); a new sweep replaces the one under way.
  void RequestStaleMasks();
  // Waits until intake has applied everything admitted (samplers keep working).
  void WaitForIntake();
  // Stops: call after the consumer stopped admitting. Intake drains completely; samplers finish
  // the request in hand and drop queued ones (RequestStaleMasks redraws them after a restart).
  // Idempotent.
  void Drain();
  // After Drain and the producer's last flush: deletes the dead letters the broker acknowledged
  // meanwhile (Outbox::Settle), so a restart does not send them again.
  Status SettleOutbox();
  // Thread-safe; reads counters only.
  PipelineCounters counters() const;
  // OK, or the first failure that halted intake (nodes/intake_stage.h). The service then stops and
  // a restart reads the event again.
  Status failure() const;

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
