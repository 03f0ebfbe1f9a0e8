#include "graph/pipeline.h"

#include <oneapi/tbb/flow_graph.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "nodes/aggregate.h"
#include "nodes/click_intake.h"
#include "nodes/dead_letter.h"
#include "nodes/decode.h"
#include "nodes/evaluator.h"
#include "nodes/image_intake.h"
#include "nodes/infer_request.h"
#include "nodes/keys.h"
#include "nodes/label_intake.h"
#include "nodes/mask_cache.h"
#include "nodes/preprocess.h"
#include "nodes/priority_fifo.h"
#include "nodes/publisher.h"
#include "nodes/sampler.h"

namespace clickdiff {
namespace flow = oneapi::tbb::flow;

namespace {

using IntakeNode = flow::multifunction_node<Decoded, std::tuple<InferRequest, flow::continue_msg>>;
using SamplerNode = flow::async_node<InferRequest, SampleSet>;

// Sampler threads outside TBB's worker pool, fed by the async_node. Each queued request holds a
// graph wait reference (reserve_wait) until it is done or dropped, so wait_for_all covers them.
// Waiting requests are taken by priority (InferRequest::priority), first come first served among
// equals, whatever order the graph's tasks delivered them in. With k = `shards` > 1 the thread that
// takes a request pins it (Sampler::Prepare), queues shards 1..k-1 ahead of every waiting request
// for the other threads, draws shard 0 itself, and whichever thread finishes the last shard joins
// the samples in shard order and passes them on to the aggregator.
class SamplerPool {
 public:
  // One thread per shard: `shards` requests' worth of threads, each request split `shards` ways.
  SamplerPool(const Sampler* sampler, int shards, std::atomic<uint64_t>* errors)
      : sampler_(sampler), shards_(std::max(1, shards)), errors_(errors) {
    for (int i = 0; i < shards_; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~SamplerPool() { Stop(); }

  void Submit(const InferRequest& request, SamplerNode::gateway_type& gateway) {
    gateway.reserve_wait();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        queue_.Push(request.priority, Job{request, &gateway, nullptr, 0});
        cv_.notify_one();
        return;
      }
    }
    gateway.release_wait();  // stopping: dropped, redrawn after a restart
  }

  // Drops queued requests and queued shards (their request is passed on as failed, quietly), lets
  // the work in hand finish, joins. Idempotent.
  void Stop() {
    std::vector<Job> dropped;
    std::deque<Job> shards;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      dropped = queue_.TakeAll();
      shards.swap(shards_queue_);
      cv_.notify_all();
    }
    for (Job& job : dropped) job.gateway->release_wait();
    for (Job& job : shards) Finish(*job.join, job.shard, Unavailable("the service is stopping"));
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  // One sharded request in flight: the shards' samples as they come in.
  struct Join {
    PreparedRequest prepared;
    SamplerNode::gateway_type* gateway = nullptr;
    std::mutex mu;
    std::vector<torch::Tensor> parts;  // GUARDED_BY(mu)
    int remaining = 0;                 // GUARDED_BY(mu)
    Status failure;                    // GUARDED_BY(mu): the first shard's failure
  };
  struct Job {
    InferRequest request;
    SamplerNode::gateway_type* gateway = nullptr;
    std::shared_ptr<Join> join;  // set for shards 1..k-1 of a started request
    int shard = 0;
  };

  void Run() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !shards_queue_.empty(); });
        if (!shards_queue_.empty()) {
          job = std::move(shards_queue_.front());
          shards_queue_.pop_front();
        } else if (!queue_.empty()) {
          job = std::move(queue_.Pop()).value();
        } else {
          return;
        }
      }
      if (job.join) {
        Finish(*job.join, job.shard, Guarded<torch::Tensor>([&] {
          return sampler_->Draw(job.join->prepared, job.shard, shards_);
        }));
      } else {
        Start(job);
      }
    }
  }

  // Runs `work`, turning an exception into a Status (a sampler thread must not die).
  template <typename T, typename F>
  static Result<T> Guarded(F work) {
    try {
      return work();
    } catch (const std::exception& e) {
      return Internal(std::string("sampler: ") + e.what());
    } catch (...) {
      return Internal("sampler: unknown exception");
    }
  }

  void Start(const Job& job) {
    Result<PreparedRequest> prepared =
        Guarded<PreparedRequest>([&] { return sampler_->Prepare(job.request); });
    if (!prepared.ok()) {
      Done(job.request, *job.gateway, prepared.status());
      return;
    }
    if (prepared->set.cached.has_value()) {
      job.gateway->try_put(std::move(prepared->set));
      job.gateway->release_wait();
      return;
    }
    auto join = std::make_shared<Join>();
    join->prepared = std::move(prepared).value();
    join->gateway = job.gateway;
    join->parts.resize(static_cast<size_t>(shards_));
    join->remaining = shards_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int shard = 1; shard < shards_; ++shard) {
        shards_queue_.push_back(Job{job.request, job.gateway, join, shard});
      }
      cv_.notify_all();
    }
    Finish(*join, 0,
           Guarded<torch::Tensor>([&] { return sampler_->Draw(join->prepared, 0, shards_); }));
  }

  // Records one shard; the last one passes the joined samples on (or reports the failure).
  void Finish(Join& join, int shard, Result<torch::Tensor> drawn) {
    {
      std::lock_guard<std::mutex> lock(join.mu);
      if (drawn.ok()) {
        join.parts[static_cast<size_t>(shard)] = std::move(drawn).value();
      } else if (join.failure.ok()) {
        join.failure = drawn.status();
      }
      if (--join.remaining > 0) return;
    }
    const InferRequest request = join.prepared.set.request;
    if (join.failure.ok()) {
      join.prepared.set.samples = join.parts.size() == 1 ? join.parts[0] : torch::cat(join.parts);
      join.gateway->try_put(std::move(join.prepared.set));
    }
    Done(request, *join.gateway, join.failure);
  }

  void Done(const InferRequest& request, SamplerNode::gateway_type& gateway, const Status& status) {
    if (!status.ok() && !Stopping()) {  // shards dropped by Stop are not failures
      errors_->fetch_add(1);
      spdlog::error("sampler: {}/{}: {}", request.dataset, request.image_id, status.ToString());
    }
    gateway.release_wait();
  }

  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  const Sampler* sampler_;
  const int shards_;
  std::atomic<uint64_t>* errors_;
  std::mutex mu_;
  std::condition_variable cv_;
  PriorityFifo<Job> queue_;       // GUARDED_BY(mu_): requests not started
  std::deque<Job> shards_queue_;  // GUARDED_BY(mu_): shards of started requests, taken first
  bool stopping_ = false;         // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace

struct Pipeline::Impl {
  Impl(const Config& config, PipelineDeps deps, Aggregator aggregator,
       std::function<void(bool)> saturation)
      : store(deps.store),
        models(deps.models),
        on_stored(std::move(deps.on_stored)),
        max_in_flight(std::max(1, config.limits.max_in_flight)),
        on_saturation(std::move(saturation)),
        decode(config.kafka.topics, DecodeLimitsFrom(config)),
        preprocess(config.model.resolution),
        dead_letters(deps.producer, deps.store, config.kafka.topics.dlq_suffix),
        click_intake(deps.store, &dead_letters, config.limits.pending_click_timeout_ms),
        image_intake(deps.store, &click_intake),
        label_intake(deps.store, &click_intake),
        cache(deps.store),
        sampler(deps.store, deps.models, &gate, &cache,
                SamplerOptions{config.sampler.samples, config.sampler.steps,
                               config.sampler.memory_budget_mb}),
        aggregate(std::move(aggregator), config.aggregator.rule),
        publisher(deps.zmq, deps.producer, config.kafka.topics.masks),
        evaluator(deps.store, deps.producer, deps.zmq,
                  EvaluatorOptions{config.model.num_classes, config.kafka.topics.metrics}),
        pool(&sampler, config.sampler.shards, &sample_errors),
        input(graph),
        limiter(graph, static_cast<size_t>(max_in_flight)),
        decode_node(graph, flow::unlimited, [this](const Envelope& e) { return decode(e); }),
        preprocess_node(graph, flow::unlimited,
                        [this](Decoded d) { return preprocess(std::move(d)); }),
        order(graph, [](const Decoded& d) { return d.seq; }),
        intake_node(
            graph, flow::serial,
            [this](const Decoded& d, IntakeNode::output_ports_type& ports) { Intake(d, ports); }),
        gate_node(
            graph, flow::unlimited,
            [this](const InferRequest& r,
                   flow::multifunction_node<InferRequest,
                                            std::tuple<InferRequest>>::output_ports_type& ports) {
              if (gate(r)) std::get<0>(ports).try_put(r);
            }),
        sampler_node(graph, flow::unlimited,
                     [this](const InferRequest& r, SamplerNode::gateway_type& gateway) {
                       pool.Submit(r, gateway);
                     }),
        aggregate_node(
            graph, flow::unlimited,
            [this](const SampleSet& s,
                   flow::multifunction_node<SampleSet,
                                            std::tuple<v1::MaskResult>>::output_ports_type& ports) {
              Result<v1::MaskResult> mask = aggregate(s);
              if (mask.ok()) {
                if (s.cached.has_value()) cache_hits.fetch_add(1);
                std::get<0>(ports).try_put(std::move(mask).value());
              } else {
                sample_errors.fetch_add(1);
                spdlog::error("aggregate: {}", mask.status().ToString());
              }
            }),
        publish_node(graph, flow::serial, [this](const v1::MaskResult& m) { Publish(m); }) {
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

  void Put(std::variant<std::monostate, KafkaMessage> what) {
    // Sequence numbers must enter the queue in order: the sequencer waits for each in turn.
    // The saturation callback runs under the same lock so that pause and resume reach the
    // consumer in the order they were decided (it only sets a flag there; it does not block).
    std::lock_guard<std::mutex> lock(admit_mu);
    Envelope envelope{next_seq++, std::move(what)};
    if (++in_flight_count >= static_cast<uint64_t>(max_in_flight) && !saturated) {
      saturated = true;
      if (on_saturation) on_saturation(true);
    }
    input.try_put(std::move(envelope));
  }

  void Intake(const Decoded& d, IntakeNode::output_ports_type& ports) {
    // A graph body must not throw (it would cancel the graph); any failure halts intake instead,
    // with the event's offset not stored.
    try {
      if (Status s = IntakeOne(d, ports); !s.ok()) Halt(s);
    } catch (const std::exception& e) {
      Halt(Internal(std::string("intake: ") + e.what()));
    } catch (...) {
      Halt(Internal("intake: unknown exception"));
    }
    std::get<1>(ports).try_put(flow::continue_msg());
    {
      std::lock_guard<std::mutex> lock(admit_mu);
      if (--in_flight_count <= static_cast<uint64_t>(max_in_flight / 2) && saturated) {
        saturated = false;
        if (on_saturation) on_saturation(false);
      }
    }
    {
      std::lock_guard<std::mutex> lock(intake_mu);
      intake_cv.notify_all();
    }
  }

  // After a failure nothing more is written: a later event's offset would skip the failed one.
  void Halt(const Status& status) {
    std::lock_guard<std::mutex> lock(failure_mu);
    if (failure.ok()) {
      spdlog::error("intake stopped: {}", status.ToString());
      failure = status;
      halted.store(true);
    }
  }

  Status IntakeOne(const Decoded& d, IntakeNode::output_ports_type& ports) {
    if (halted.load()) return Status::Ok();
    if (std::holds_alternative<clickdiff::Tick>(d.event)) {
      return click_intake.ExpirePending(NowMs()).status();
    }
    applied.fetch_add(1);
    IntakeOutcome outcome;
    std::string image_key;  // the image whose records the event writes
    if (const auto* rejected = std::get_if<Rejected>(&d.event)) {
      outcome.rejected = rejected->reason;
    } else if (const auto* image = std::get_if<ImageRecord>(&d.event)) {
      outcome = image_intake(*image, d.source);
      image_key = keys::Image(image->stored.event().dataset(), image->stored.event().image_id());
    } else if (const auto* click = std::get_if<v1::ClickEvent>(&d.event)) {
      outcome = click_intake(*click, d.source);
      image_key = keys::Image(click->dataset(), click->image_id());
    } else if (const auto* label = std::get_if<v1::LabelEvent>(&d.event)) {
      outcome = label_intake(*label, d.source);
      image_key = keys::Image(label->dataset(), label->image_id());
    }
    CLICKDIFF_RETURN_IF_ERROR(
        outcome.failure.WithContext(d.source.topic + "@" + std::to_string(d.source.offset)));
    if (outcome.rejected) CLICKDIFF_RETURN_IF_ERROR(dead_letters(d.source, *outcome.rejected));
    if (outcome.duplicate) duplicates.fetch_add(1);
    if (!outcome.rejected && !outcome.duplicate && on_stored) on_stored(image_key);
    for (const InferRequest& r : outcome.infer) std::get<0>(ports).try_put(r);
    return Status::Ok();
  }

  void Publish(const v1::MaskResult& mask) {
    // Two sampler threads may draw one image at once (a click arrived while it was sampled): the
    // one drawn for an older model version or click revision must not replace the newer.
    Result<std::optional<v1::MaskResult>> current = cache.Current(mask.dataset(), mask.image_id());
    if (current.ok() && current->has_value() &&
        std::make_pair((*current)->model_version(), (*current)->click_revision()) >
            std::make_pair(mask.model_version(), mask.click_revision())) {
      spdlog::debug("dropping a stale mask of {}/{}", mask.dataset(), mask.image_id());
      return;
    }
    if (Status s = cache(mask); !s.ok()) {
      spdlog::error("mask cache {}/{}: {}", mask.dataset(), mask.image_id(), s.ToString());
    }
    Result<uint64_t> sequence = publisher(mask);
    if (!sequence.ok()) spdlog::error("publish: {}", sequence.status().ToString());
    masks.fetch_add(1);
    spdlog::debug("mask {}/{} v{} r{} seq {} in {:.0f} ms", mask.dataset(), mask.image_id(),
                  mask.model_version(), mask.click_revision(), sequence.ok() ? *sequence : 0,
                  mask.latency_ms());
    Result<std::optional<v1::Metrics>> scored = Internal("evaluator: unknown exception");
    try {  // a graph body must not throw
      scored = evaluator(mask);
    } catch (const std::exception& e) {
      scored = Internal(std::string("evaluator: ") + e.what());
    } catch (...) {
    }
    if (!scored.ok()) {
      spdlog::error("evaluator {}/{}: {}", mask.dataset(), mask.image_id(),
                    scored.status().ToString());
    } else if (scored->has_value()) {
      evaluated.fetch_add(1);
    }
  }

  Store* store;
  const ModelSlot* models;
  std::function<void(const std::string&)> on_stored;
  const int max_in_flight;
  std::function<void(bool)> on_saturation;

  std::mutex admit_mu;
  uint64_t next_seq = 0;         // GUARDED_BY(admit_mu)
  uint64_t in_flight_count = 0;  // GUARDED_BY(admit_mu)
  bool saturated = false;        // GUARDED_BY(admit_mu)
  std::mutex intake_mu;          // with intake_cv: WaitForIntake
  std::condition_variable intake_cv;

  std::atomic<uint64_t> admitted{0}, applied{0}, duplicates{0}, masks{0}, cache_hits{0},
      sample_errors{0}, evaluated{0};

  std::mutex failure_mu;
  Status failure;  // GUARDED_BY(failure_mu): the first intake failure
  std::atomic<bool> halted{false};

  Decode decode;
  Preprocess preprocess;
  DeadLetterSink dead_letters;
  ClickIntake click_intake;
  ImageIntake image_intake;
  LabelIntake label_intake;
  MaskCache cache;
  InferRequestGate gate;
  Sampler sampler;
  Aggregate aggregate;
  Publisher publisher;
  Evaluator evaluator;  // publish stage only
  SamplerPool pool;

  flow::graph graph;
  flow::queue_node<Envelope> input;
  flow::limiter_node<Envelope> limiter;
  flow::function_node<Envelope, Decoded> decode_node;
  flow::function_node<Decoded, Decoded> preprocess_node;
  flow::sequencer_node<Decoded> order;
  IntakeNode intake_node;
  flow::multifunction_node<InferRequest, std::tuple<InferRequest>> gate_node;
  SamplerNode sampler_node;
  flow::multifunction_node<SampleSet, std::tuple<v1::MaskResult>> aggregate_node;
  flow::function_node<v1::MaskResult> publish_node;
  bool drained = false;
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pipeline::~Pipeline() { Drain(); }

Result<std::unique_ptr<Pipeline>> Pipeline::Create(const Config& config, PipelineDeps deps,
                                                   Aggregator aggregator,
                                                   std::function<void(bool)> on_saturation) {
  if (!deps.store || !deps.producer || !deps.zmq || !deps.models) {
    return InvalidArgument("pipeline: store, producer, zmq and models are all required");
  }
  auto impl = std::make_unique<Impl>(config, deps, std::move(aggregator), std::move(on_saturation));
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

void Pipeline::Admit(KafkaMessage message) {
  impl_->admitted.fetch_add(1);
  impl_->Put(std::move(message));
}

void Pipeline::Tick() { impl_->Put(std::monostate{}); }

Status Pipeline::RequestStaleMasks() {
  std::shared_ptr<const ServingModel> model = impl_->models->Get();
  const uint64_t version = model ? model->version : 0;
  // Missing masks and masks drawn before the image's last click come first (kPriorityStale);
  // those merely from another model version follow, the most uncertain first.
  std::vector<InferRequest> stale;
  Status scanned =
      impl_->store->Scan(Family::kImages, "", [&](std::string_view key, std::string_view value) {
        v1::StoredImage image;
        if (!image.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
        const v1::ImageEvent& e = image.event();
        Result<std::optional<v1::MaskResult>> current =
            impl_->cache.Current(e.dataset(), e.image_id());
        Result<uint64_t> revision =
            impl_->store->Count(Family::kClicks, keys::Under(std::string(key)));
        if (!current.ok() || !revision.ok() || !current->has_value() ||
            (*current)->click_revision() != *revision) {
          stale.push_back(RequestFor(e.dataset(), e.image_id(), kPriorityStale));
        } else if ((*current)->model_version() != version) {
          const std::string& u = (*current)->uncertainty();
          double sum = 0;
          for (unsigned char b : u) sum += b;
          stale.push_back(
              RequestFor(e.dataset(), e.image_id(),
                         u.empty() ? 1 : sum / (255.0 * static_cast<double>(u.size()))));
        }
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  spdlog::info("{} stored images need a mask drawn for model version {}", stale.size(), version);
  for (const InferRequest& r : stale) impl_->gate_node.try_put(r);
  return Status::Ok();
}

void Pipeline::WaitForIntake() {
  std::unique_lock<std::mutex> lock(impl_->intake_mu);
  impl_->intake_cv.wait(lock, [&] {
    std::lock_guard<std::mutex> admit(impl_->admit_mu);
    return impl_->in_flight_count == 0;
  });
}

void Pipeline::Drain() {
  if (impl_ == nullptr || impl_->drained) return;
  impl_->drained = true;
  WaitForIntake();
  impl_->pool.Stop();
  impl_->graph.wait_for_all();
}

Status Pipeline::failure() const {
  std::lock_guard<std::mutex> lock(impl_->failure_mu);
  return impl_->failure;
}

PipelineCounters Pipeline::counters() const {
  PipelineCounters c;
  c.admitted = impl_->admitted.load();
  c.applied = impl_->applied.load();
  c.duplicates = impl_->duplicates.load();
  c.dead_letters = impl_->dead_letters.count();
  c.masks = impl_->masks.load();
  c.evaluated = impl_->evaluated.load();
  c.cache_hits = impl_->cache_hits.load();
  c.sample_errors = impl_->sample_errors.load();
  {
    std::lock_guard<std::mutex> lock(impl_->admit_mu);
    c.in_flight = impl_->in_flight_count;
  }
  c.infer_waiting = impl_->gate.waiting();
  return c;
}

}  // namespace clickdiff
