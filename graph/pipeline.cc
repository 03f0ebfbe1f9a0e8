#include "graph/pipeline.h"

#include <oneapi/tbb/flow_graph.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/guard.h"
#include "nodes/aggregate.h"
#include "nodes/decode.h"
#include "nodes/evaluator.h"
#include "nodes/infer_request.h"
#include "nodes/intake_stage.h"
#include "nodes/mask_cache.h"
#include "nodes/preprocess.h"
#include "nodes/publish_stage.h"
#include "nodes/publisher.h"
#include "nodes/sampler.h"
#include "nodes/sampler_pool.h"
#include "nodes/stale_masks.h"

namespace clickdiff {
namespace flow = oneapi::tbb::flow;

namespace {

using IntakeNode = flow::multifunction_node<Decoded, std::tuple<InferRequest, flow::continue_msg>>;
using GateNode = flow::multifunction_node<InferRequest, std::tuple<InferRequest>>;
using SamplerNode = flow::async_node<InferRequest, SampleSet>;
using AggregateNode = flow::multifunction_node<SampleSet, std::tuple<v1::MaskResult>>;

// A sweep of stale masks goes to the samplers a page at a time (nodes/stale_masks.h): the next
// page once fewer than kSweepLowWater requests wait, looked at every kSweepCheck.
constexpr size_t kSweepPage = 1024;
constexpr size_t kSweepLowWater = kSweepPage / 4;
constexpr std::chrono::milliseconds kSweepCheck{200};

// What a record holds in memory, as backpressure counts it.
uint64_t RecordBytes(const KafkaMessage& m) {
  return m.topic.size() + m.key.size() + m.value.size();
}

}  // namespace

// The node bodies (nodes/) and the graph that connects them. Members are declared in dependency
// order: the graph and its nodes last, so they go first.
struct Pipeline::Impl {
  Impl(const Config& config, PipelineDeps deps, model::Aggregator aggregator, StoredCounts stored,
       std::unique_ptr<Outbox> opened)
      : models(deps.models),
        on_saturation(std::move(deps.on_saturation)),
        max_in_flight(static_cast<uint64_t>(std::max(1, config.limits.max_in_flight))),
        max_in_flight_bytes(static_cast<uint64_t>(std::max(1, config.limits.max_in_flight_mb))
                            << 20),
        previews_on(config.sampler.preview_samples > 0),
        images_topic(config.kafka.topics.images),
        outbox(std::move(opened)),
        decode(config.kafka.topics, DecodeLimitsFrom(config)),
        preprocess(config.model.resolution, deps.models, config.model.crop_to_content),
        intake(deps.store, deps.producer, outbox.get(), config.kafka.topics, config.limits, stored,
               std::move(deps.on_stored),
               static_cast<uint64_t>(config.trainer.keep_curve_versions)),
        cache(deps.store),
        stale_masks(deps.store, &cache),
        sampler(deps.store, deps.models, &gate, &cache, config.sampler),
        pool(&sampler, config.sampler.shards, previews_on),
        aggregate(std::move(aggregator)),
        publisher(deps.zmq, deps.producer, config.kafka.topics.masks),
        evaluator(deps.store, deps.producer, deps.zmq,
                  EvaluatorOptions{config.model.num_classes, config.kafka.topics.metrics,
                                   static_cast<uint64_t>(config.trainer.keep_versions),
                                   static_cast<uint64_t>(config.trainer.keep_curve_versions)}),
        publish(&cache, &publisher, &evaluator, std::move(deps.on_mask_stored)),
        input(graph),
        limiter(graph, max_in_flight),
        decode_node(graph, flow::unlimited, [this](const Envelope& e) { return decode(e); }),
        preprocess_node(graph, flow::unlimited,
                        [this](Decoded d) { return preprocess(std::move(d)); }),
        order(graph, [](const Decoded& d) { return d.seq; }),
        intake_node(graph, flow::serial,
                    [this](const Decoded& d, IntakeNode::output_ports_type& ports) {
                      for (const InferRequest& r : intake(d)) std::get<0>(ports).try_put(r);
                      std::get<1>(ports).try_put(flow::continue_msg());
                      Applied(RecordBytes(d.source));
                    }),
        gate_node(graph, flow::unlimited,
                  [this](const InferRequest& r, GateNode::output_ports_type& ports) {
                    if (r.preview && !previews_on) return;  // sampler.preview_samples 0
                    // No exception may leave a body: it would cancel the whole graph.
                    Result<bool> pass = Guarded("gate", [&] { return Result<bool>(gate(r)); });
                    if (!pass.ok()) {
                      spdlog::error("{} (request for {} dropped)", pass.status().ToString(),
                                    r.image_id);
                      return;
                    }
                    if (*pass) std::get<0>(ports).try_put(r);
                  }),
        sampler_node(graph, flow::unlimited,
                     [this](const InferRequest& r, SamplerNode::gateway_type& gateway) {
                       gateway.reserve_wait();  // wait_for_all covers the pool's work
                       Status submitted = Guarded("sampler pool", [&] {
                         pool.Submit(r, [&gateway](std::optional<SampleSet> drawn) {
                           if (drawn) gateway.try_put(*drawn);
                           gateway.release_wait();
                         });
                         return Status::Ok();
                       });
                       if (!submitted.ok()) {  // not queued: its callback will never run
                         spdlog::error("{} (request for {} dropped)", submitted.ToString(),
                                       r.image_id);
                         gateway.release_wait();
                       }
                     }),
        aggregate_node(graph, flow::unlimited,
                       [this](const SampleSet& s, AggregateNode::output_ports_type& ports) {
                         Result<v1::MaskResult> mask = aggregate(s);
                         if (!mask.ok()) {
                           aggregate_errors.fetch_add(1);
                           spdlog::error("aggregate: {}", mask.status().ToString());
                           return;
                         }
                         if (s.cached.has_value()) cache_hits.fetch_add(1);
                         std::get<0>(ports).try_put(std::move(mask).value());
                       }),
        publish_node(graph, flow::serial, [this](const v1::MaskResult& m) {
          PublishOutcome out = publish(m);
          masks.fetch_add(out.published ? 1 : 0);
          previews.fetch_add(out.published && out.preview ? 1 : 0);
          evaluated.fetch_add(out.evaluated ? 1 : 0);
        }) {
    flow::make_edge(input, limiter);
    flow::make_edge(limiter, decode_node);
    flow::make_edge(decode_node, preprocess_node);
    flow::make_edge(preprocess_node, order);
    flow::make_edge(order, intake_node);
    flow::make_edge(flow::output_port<0>(intake_node), gate_node);
    flow::make_edge(flow::output_port<1>(intake_node), limiter.decrementer());
    flow::make_edge(flow::output_port<0>(gate_node), sampler_node);
    flow::make_edge(sampler_node, aggregate_node);
    flow::make_edge(flow::output_port<0>(aggregate_node), publish_node);
  }

  // Sequence numbers enter the queue in order (the sequencer waits for each in turn). The
  // saturation callback runs under the same lock so that pause and resume reach the consumer in
  // the order they were decided.
  void Put(std::variant<clickdiff::Tick, KafkaMessage> what) {
    std::lock_guard<std::mutex> lock(admit_mu);
    if (auto* tick = std::get_if<clickdiff::Tick>(&what)) {
      // Paused, the consumer does not read on: not at its end, whatever it was before.
      tick->images_at_end_since_ms = saturated ? 0 : images_at_end_since_ms;
    } else if (const auto& m = std::get<KafkaMessage>(what); m.topic == images_topic) {
      images_at_end[m.partition] = false;  // a record: not at its end until the next end event
      images_at_end_since_ms = 0;
    }
    // The sequence number is taken only once the envelope is in the graph: if try_put throws (out
    // of memory), the sequencer must not wait for it forever. The caller hears of the exception
    // (the consumer then stops).
    const uint64_t bytes =
        std::holds_alternative<KafkaMessage>(what) ? RecordBytes(std::get<KafkaMessage>(what)) : 0;
    Envelope envelope{next_seq, std::move(what)};
    input.try_put(envelope);
    ++next_seq;
    in_flight_bytes += bytes;
    if ((++in_flight >= max_in_flight || in_flight_bytes >= max_in_flight_bytes) && !saturated) {
      saturated = true;
      if (on_saturation) on_saturation(true);
    }
  }

  // The sweeper thread: puts a sweep's first page in at once, each next one when few requests
  // wait. A page is read without the lock, so a new sweep never waits for one; a page read for a
  // sweep that has been replaced meanwhile is dropped.
  void SweepLoop() {
    std::unique_lock<std::mutex> lock(sweep_mu);
    while (!sweep_stop) {
      sweep_cv.wait_for(lock, kSweepCheck, [&] { return sweep_stop || sweep_first; });
      if (sweep_stop) return;
      if (!sweeping || (!sweep_first && gate.waiting() >= kSweepLowWater)) continue;
      const uint64_t generation = sweep_generation;
      const uint64_t version = sweep_version;
      const std::optional<SweepCursor> after = sweep_after;
      const bool first = std::exchange(sweep_first, false);
      lock.unlock();
      Result<SweepPage> page = stale_masks.Page(version, after, kSweepPage);
      lock.lock();
      if (generation != sweep_generation) continue;  // replaced: the new one starts over
      if (!page.ok()) {
        spdlog::error(
            "redrawing stale masks for model version {}: {} (the next version sweeps "
            "again)",
            version, page.status().ToString());
        sweeping = false;
        continue;
      }
      sweeping = page->next.has_value();
      sweep_after = std::move(page->next);
      if (first || !page->requests.empty()) {
        spdlog::info(
            "{} stored images need a mask drawn for model version {}{}", page->requests.size(),
            version,
            sweeping ? " (and more: the next ones once the samplers have taken these)" : "");
      }
      lock.unlock();
      for (const InferRequest& r : page->requests) gate_node.try_put(r);
      lock.lock();
    }
  }

  // One event is through intake; `bytes` its record's (RecordBytes, 0 for a tick).
  void Applied(uint64_t bytes) {
    {
      std::lock_guard<std::mutex> lock(admit_mu);
      in_flight_bytes -= std::min(bytes, in_flight_bytes);
      if (--in_flight <= max_in_flight / 2 && in_flight_bytes <= max_in_flight_bytes / 2 &&
          saturated) {
        saturated = false;
        if (on_saturation) on_saturation(false);
      }
    }
    std::lock_guard<std::mutex> lock(intake_mu);
    intake_cv.notify_all();
  }

  const ModelSlot* models;
  std::function<void(bool)> on_saturation;
  const uint64_t max_in_flight;
  const uint64_t max_in_flight_bytes;
  const bool previews_on;
  const std::string images_topic;
  std::mutex admit_mu;
  uint64_t next_seq = 0;  // GUARDED_BY(admit_mu)
  // Images partitions at their end (ImagesAtEnd) or not (a record admitted since), and since
  // when all of them are (0: not all). GUARDED_BY(admit_mu).
  std::map<int32_t, bool> images_at_end;
  int64_t images_at_end_since_ms = 0;
  uint64_t in_flight = 0;        // GUARDED_BY(admit_mu)
  uint64_t in_flight_bytes = 0;  // GUARDED_BY(admit_mu): their records' (RecordBytes)
  bool saturated = false;        // GUARDED_BY(admit_mu)
  std::mutex intake_mu;          // with intake_cv: WaitForIntake
  std::condition_variable intake_cv;
  std::atomic<uint64_t> admitted{0}, masks{0}, previews{0}, evaluated{0}, cache_hits{0},
      aggregate_errors{0};
  bool drained = false;

  std::mutex sweep_mu;  // with sweep_cv: the sweep of stale masks under way (SweepLoop)
  std::condition_variable sweep_cv;
  uint64_t sweep_generation = 0;           // GUARDED_BY(sweep_mu): one per RequestStaleMasks
  uint64_t sweep_version = 0;              // GUARDED_BY(sweep_mu)
  bool sweeping = false;                   // GUARDED_BY(sweep_mu): pages are left
  bool sweep_first = false;                // GUARDED_BY(sweep_mu): the first page is owed
  bool sweep_stop = false;                 // GUARDED_BY(sweep_mu)
  std::optional<SweepCursor> sweep_after;  // GUARDED_BY(sweep_mu): where the next page starts
  std::thread sweeper;                     // runs SweepLoop; joined by Drain

  std::unique_ptr<Outbox> outbox;  // dead letters owed to Kafka (intake's)
  Decode decode;
  Preprocess preprocess;
  IntakeStage intake;
  MaskCache cache;
  StaleMasks stale_masks;
  InferRequestGate gate;
  Sampler sampler;
  SamplerPool pool;
  Aggregate aggregate;
  Publisher publisher;
  Evaluator evaluator;
  PublishStage publish;

  flow::graph graph;
  flow::queue_node<Envelope> input;
  flow::limiter_node<Envelope> limiter;
  flow::function_node<Envelope, Decoded> decode_node;
  flow::function_node<Decoded, Decoded> preprocess_node;
  flow::sequencer_node<Decoded> order;
  IntakeNode intake_node;
  GateNode gate_node;
  SamplerNode sampler_node;
  AggregateNode aggregate_node;
  flow::function_node<v1::MaskResult> publish_node;
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pipeline::~Pipeline() { Drain(); }

Result<std::unique_ptr<Pipeline>> Pipeline::Create(const Config& config, PipelineDeps deps,
                                                   model::Aggregator aggregator) {
  if (!deps.store || !deps.producer || !deps.zmq || !deps.models) {
    return InvalidArgument("pipeline: store, producer, zmq and models are all required");
  }
  Result<StoredCounts> stored = IntakeStage::CountStored(*deps.store);
  if (!stored.ok()) return stored.status().WithContext("pipeline");
  Result<std::unique_ptr<Outbox>> outbox = Outbox::Open(deps.store, deps.producer, "intake");
  if (!outbox.ok()) return outbox.status().WithContext("pipeline");
  auto impl = std::make_unique<Impl>(config, std::move(deps), std::move(aggregator), *stored,
                                     std::move(outbox).value());
  CLICKDIFF_RETURN_IF_ERROR(impl->pool.Start());
  impl->sweeper = std::thread([raw = impl.get()] { raw->SweepLoop(); });
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

void Pipeline::Admit(KafkaMessage message) {
  impl_->admitted.fetch_add(1);
  impl_->Put(std::move(message));
}

Status Pipeline::SettleOutbox() { return impl_->outbox->Settle(); }

void Pipeline::Tick() { impl_->Put(clickdiff::Tick{}); }

void Pipeline::ImagesAssigned(int32_t partition) {
  std::lock_guard<std::mutex> lock(impl_->admit_mu);
  impl_->images_at_end[partition] = false;  // until its first end event
  impl_->images_at_end_since_ms = 0;
}

void Pipeline::ImagesAtEnd(int32_t partition) {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.admit_mu);
  s.images_at_end[partition] = true;
  const bool all = std::all_of(s.images_at_end.begin(), s.images_at_end.end(),
                               [](const auto& p) { return p.second; });
  if (all && s.images_at_end_since_ms == 0) s.images_at_end_since_ms = NowMs();
}

void Pipeline::RequestStaleMasks() {
  std::shared_ptr<const ServingModel> model = impl_->models->Get();
  {
    std::lock_guard<std::mutex> lock(impl_->sweep_mu);
    ++impl_->sweep_generation;
    impl_->sweep_version = model ? model->version : 0;
    impl_->sweeping = true;
    impl_->sweep_first = true;
    impl_->sweep_after.reset();
  }
  impl_->sweep_cv.notify_all();
}

void Pipeline::WaitForIntake() {
  std::unique_lock<std::mutex> lock(impl_->intake_mu);
  impl_->intake_cv.wait(lock, [&] {
    std::lock_guard<std::mutex> admit(impl_->admit_mu);
    return impl_->in_flight == 0;
  });
}

void Pipeline::Drain() {
  if (impl_ == nullptr || impl_->drained) return;
  impl_->drained = true;
  WaitForIntake();
  {
    std::lock_guard<std::mutex> lock(impl_->sweep_mu);
    impl_->sweep_stop = true;
  }
  impl_->sweep_cv.notify_all();
  if (impl_->sweeper.joinable()) impl_->sweeper.join();
  impl_->pool.Stop();
  impl_->graph.wait_for_all();
}

Status Pipeline::failure() const { return impl_->intake.failure(); }

PipelineCounters Pipeline::counters() const {
  IntakeCounters intake = impl_->intake.counters();
  PipelineCounters c;
  c.admitted = impl_->admitted.load();
  c.applied = intake.applied;
  c.duplicates = intake.duplicates;
  c.dead_letters = intake.dead_letters;
  c.stored = intake.stored;
  c.masks = impl_->masks.load();
  c.previews = impl_->previews.load();
  c.evaluated = impl_->evaluated.load();
  c.cache_hits = impl_->cache_hits.load();
  c.sample_errors = impl_->pool.errors() + impl_->aggregate_errors.load();
  {
    std::lock_guard<std::mutex> lock(impl_->admit_mu);
    c.in_flight = impl_->in_flight;
    c.in_flight_bytes = impl_->in_flight_bytes;
  }
  c.infer_waiting = impl_->gate.waiting();
  return c;
}

}  // namespace clickdiff
