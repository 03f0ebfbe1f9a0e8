#include "services/daemon.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "graph/pipeline.h"
#include "io/embedded_broker.h"
#include "io/kafka_consumer.h"
#include "io/kafka_producer.h"
#include "io/store.h"
#include "io/zmq_server.h"
#include "model/checkpoint_store.h"
#include "nodes/continuous_trainer.h"
#include "nodes/evaluator.h"
#include "nodes/keys.h"
#include "nodes/mask_cache.h"
#include "services/model_options.h"

namespace clickdiff {
namespace {

// Lends `object` to other threads that read `slot` under `mu`: sets the slot now and clears it
// when the Lend goes (declare it after the object, so it goes first), so that a reader holding
// the lock never sees an object that is gone.
template <typename T>
class Lend {
 public:
  Lend(std::mutex& mu, T*& slot, T* object) : mu_(mu), slot_(slot) {
    std::lock_guard<std::mutex> lock(mu_);
    slot_ = object;
  }
  ~Lend() {
    std::lock_guard<std::mutex> lock(mu_);
    slot_ = nullptr;
  }
  Lend(const Lend&) = delete;
  Lend& operator=(const Lend&) = delete;

 private:
  std::mutex& mu_;
  T*& slot_;
};

Result<std::shared_ptr<const ServingModel>> LoadModel(const Config& config, torch::Device device) {
  auto serving = std::make_shared<ServingModel>();
  if (config.model.checkpoint.empty()) {
    Result<model::SegmenterOptions> options = SegmenterOptionsFrom(config);
    if (!options.ok()) return options.status();
    Result<model::Segmenter> fresh = model::Segmenter::Create(*options, device);
    if (!fresh.ok()) return fresh.status();
    spdlog::warn(
        "model.checkpoint is empty: serving an untrained {} model (version 0); train one "
        "with `clickdiff train` and set model.checkpoint",
        config.model.method);
    serving->segmenter = std::make_shared<model::Segmenter>(std::move(fresh).value());
    serving->version = 0;
    return std::shared_ptr<const ServingModel>(serving);
  }
  Result<model::Segmenter> loaded = model::CheckpointStore::Load(config.model.checkpoint, device);
  if (!loaded.ok()) return loaded.status();
  if (loaded->options().num_classes != config.model.num_classes) {
    return InvalidArgument(config.model.checkpoint + ": the model has " +
                           std::to_string(loaded->options().num_classes) +
                           " classes but model.num_classes is " +
                           std::to_string(config.model.num_classes));
  }
  serving->segmenter = std::make_shared<model::Segmenter>(std::move(loaded).value());
  serving->version = 1;
  spdlog::info("serving {} ({}) as model version 1", config.model.checkpoint, config.model.method);
  return std::shared_ptr<const ServingModel>(serving);
}

v1::QueryReply Answer(const v1::Query& query, Store& store, const MaskCache& cache,
                      const Pipeline* pipeline, const ModelSlot& models,
                      const ServiceEndpoints& endpoints) {
  v1::QueryReply reply;
  auto fail = [&](std::string why) {
    reply.set_ok(false);
    reply.set_error(std::move(why));
    return reply;
  };
  switch (query.kind()) {
    case v1::Query::KIND_MASK: {
      Result<std::optional<v1::MaskResult>> mask = cache.Current(query.dataset(), query.image_id());
      if (!mask.ok()) return fail(mask.status().message());
      if (!mask->has_value()) {
        return fail("no mask yet for " + query.dataset() + "/" + query.image_id());
      }
      *reply.mutable_mask() = std::move(**mask);
      break;
    }
    case v1::Query::KIND_IMAGE: {
      Result<std::optional<std::string>> bytes =
          store.Get(Family::kImages, keys::Image(query.dataset(), query.image_id()));
      if (!bytes.ok()) return fail(bytes.status().message());
      v1::StoredImage stored;
      if (!bytes->has_value()) return fail("no image " + query.dataset() + "/" + query.image_id());
      if (!stored.ParseFromString(**bytes)) return fail("the stored image is corrupt");
      *reply.mutable_image() = std::move(*stored.mutable_event());
      break;
    }
    case v1::Query::KIND_STATUS: {
      v1::ServiceStatus* s = reply.mutable_status();
      std::shared_ptr<const ServingModel> model = models.Get();
      s->set_model_version(model ? model->version : 0);
      for (auto [family, field] : {std::pair{Family::kImages, &v1::ServiceStatus::set_images},
                                   std::pair{Family::kClicks, &v1::ServiceStatus::set_clicks},
                                   std::pair{Family::kLabels, &v1::ServiceStatus::set_labels}}) {
        Result<uint64_t> n = store.Count(family);
        if (!n.ok()) return fail(n.status().message());
        (s->*field)(*n);
      }
      if (pipeline != nullptr) {
        PipelineCounters c = pipeline->counters();
        s->set_masks(c.masks);
        s->set_dead_letters(c.dead_letters);
        s->set_in_flight(c.in_flight);
        s->set_events(c.admitted);
        s->set_evaluated(c.evaluated);
      }
      s->set_bootstrap_servers(endpoints.bootstrap_servers);
      s->set_publish_endpoint(endpoints.publish_endpoint);
      s->set_query_endpoint(endpoints.query_endpoint);
      break;
    }
    case v1::Query::KIND_METRICS: {
      Result<std::vector<v1::Metrics>> metrics = Evaluator::VersionMetrics(store, query.dataset());
      if (!metrics.ok()) return fail(metrics.status().message());
      for (v1::Metrics& m : *metrics) *reply.add_metrics() = std::move(m);
      break;
    }
    default:
      return fail("unknown query kind " + std::to_string(query.kind()));
  }
  reply.set_ok(true);
  return reply;
}

}  // namespace

std::vector<std::string> ServiceTopics(const KafkaConfig& kafka) {
  const KafkaTopics& t = kafka.topics;
  std::vector<std::string> topics = {t.images, t.clicks, t.labels, t.model_updates, t.metrics};
  if (!t.masks.empty()) topics.push_back(t.masks);
  for (const std::string& in : {t.images, t.clicks, t.labels}) topics.push_back(in + t.dlq_suffix);
  return topics;
}

Status RunDaemon(const Config& given, const std::atomic<bool>& stop,
                 const std::function<void(const ServiceEndpoints&)>& on_ready) {
  Config config = given;
  Result<ServingPlan> serving = PlanServing(config);
  if (!serving.ok()) return serving.status();
  config.sampler.shards = serving->shards;
  // Sampler threads and the trainer each run LibTorch ops with compute.torch_threads threads; by
  // default they split the cores between them instead of each taking all of them.
  const int workers = std::max(1, config.sampler.shards) + (config.trainer.continuous ? 1 : 0);
  if (config.compute.torch_threads == 0) {
    config.compute.torch_threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / workers);
  }
  Result<Compute> compute = SetUpCompute(config);
  if (!compute.ok()) return compute.status();
  Result<std::unique_ptr<Store>> store = Store::Open(config.store);
  if (!store.ok()) return store.status().WithContext("store");
  MaskCache cache(store->get());

  ServiceEndpoints endpoints;
  endpoints.pid = static_cast<int64_t>(getpid());
  std::unique_ptr<EmbeddedBroker> broker;
  if (config.mode == "embedded") {
    Result<std::unique_ptr<EmbeddedBroker>> started =
        EmbeddedBroker::Start(config.kafka.embedded_brokers);
    if (!started.ok()) return started.status().WithContext("embedded broker");
    broker = std::move(started).value();
    for (const std::string& topic : ServiceTopics(config.kafka)) {
      CLICKDIFF_RETURN_IF_ERROR(broker->CreateTopic(topic, config.kafka.partitions));
    }
    endpoints.bootstrap_servers = broker->bootstrap_servers();
    spdlog::info("embedded Kafka broker at {}", endpoints.bootstrap_servers);
  } else {
    endpoints.bootstrap_servers = config.kafka.bootstrap_servers;
  }

  ModelSlot models;
  // The newest version the service trained itself, from the configured model, wins over that
  // model; versions of another lineage are not resumed, and the configured model then continues
  // their numbering, so no cached mask of theirs passes for current.
  const std::string lineage =
      config.model.method + " from " +
      (config.model.checkpoint.empty() ? std::string("scratch") : config.model.checkpoint) + ", " +
      std::to_string(config.model.num_classes) + " classes, grid " +
      std::to_string(config.model.resolution);
  Result<StoredVersions> stored = ContinuousTrainer::LoadLatest(**store, compute->device, lineage);
  if (!stored.ok()) return stored.status().WithContext("model");
  if (stored->model.has_value()) {
    spdlog::info("serving model version {} from the store", stored->model->version);
    auto model = std::make_shared<ServingModel>(std::move(*stored->model));
    CLICKDIFF_RETURN_IF_ERROR(AddReplicas(*model, serving->devices));
    models.Set(std::move(model));
  } else {
    Result<std::shared_ptr<const ServingModel>> loaded = LoadModel(config, compute->device);
    if (!loaded.ok()) return loaded.status().WithContext("model");
    auto model = std::make_shared<ServingModel>(**loaded);
    // Versions of another lineage are not resumed: their numbering continues.
    if (stored->newest > 0) model->version = stored->newest + 1;
    CLICKDIFF_RETURN_IF_ERROR(AddReplicas(*model, serving->devices));
    models.Set(std::move(model));
  }
  if (serving->devices.size() > 1) {
    std::string names;
    for (const torch::Device& d : serving->devices) names += " " + d.str();
    spdlog::info("sampler shards draw on{} in turn (a copy of each version on each)", names);
  }
  spdlog::info("{} sampler thread(s){}, {} torch thread(s) each", config.sampler.shards,
               config.trainer.continuous ? " and a trainer" : "", config.compute.torch_threads);
  Result<Aggregator> aggregator = MakeAggregator(config.aggregator, config.model.num_classes);
  if (!aggregator.ok()) return aggregator.status();

  // What the query handler (on the ZeroMQ thread) may see; it holds the lock while answering, and
  // the pipeline is withdrawn (below) before it is destroyed.
  struct QueryView {
    std::mutex mu;
    const Pipeline* pipeline = nullptr;  // GUARDED_BY(mu)
    ServiceEndpoints endpoints;          // GUARDED_BY(mu)
  } view;
  Result<std::unique_ptr<ZmqServer>> zmq = ZmqServer::Bind(config.zmq, [&](const v1::Query& query) {
    std::lock_guard<std::mutex> lock(view.mu);
    return Answer(query, **store, cache, view.pipeline, models, view.endpoints);
  });
  if (!zmq.ok()) return zmq.status().WithContext("zeromq");
  endpoints.publish_endpoint = (*zmq)->publish_endpoint();
  endpoints.query_endpoint = (*zmq)->query_endpoint();
  if (config.zmq.curve.enabled) endpoints.server_public_key = config.zmq.curve.server_public_key;
  {
    std::lock_guard<std::mutex> lock(view.mu);
    view.endpoints = endpoints;
  }

  Result<std::unique_ptr<KafkaProducer>> producer =
      KafkaProducer::Create(config.kafka, endpoints.bootstrap_servers);
  if (!producer.ok()) return producer.status().WithContext("kafka producer");

  // Current masks from the store, so a subscriber gets them even before anything is redrawn.
  CLICKDIFF_RETURN_IF_ERROR(
      (*store)->Scan(Family::kMasks, "", [&](std::string_view, std::string_view value) {
        v1::MaskResult mask;
        if (mask.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          (*zmq)->Remember(mask);
        }
        return true;
      }));

  std::atomic<KafkaConsumer*> consumer_view{nullptr};  // for pause/resume; null when stopped
  // What intake stores reaches the trainer's replay (ContinuousTrainer::Touch). Set once the
  // trainer exists, before the consumer starts; cleared before the trainer goes.
  struct TrainerView {
    std::mutex mu;
    ContinuousTrainer* trainer = nullptr;  // GUARDED_BY(mu)
  } trainer_view;
  PipelineDeps deps{store->get(), producer->get(), zmq->get(), &models,
                    [&trainer_view](const std::string& image_key) {
                      std::lock_guard<std::mutex> lock(trainer_view.mu);
                      if (trainer_view.trainer != nullptr) trainer_view.trainer->Touch(image_key);
                    }};
  Result<std::unique_ptr<Pipeline>> pipeline =
      Pipeline::Create(config, deps, std::move(aggregator).value(), [&](bool saturated) {
        KafkaConsumer* c = consumer_view.load();
        if (c == nullptr) return;
        if (saturated) {
          c->Pause();
        } else {
          c->Resume();
        }
      });
  if (!pipeline.ok()) return pipeline.status();
  // Withdrawn from the query handler on every way out, before the pipeline is destroyed.
  Lend<const Pipeline> lent_pipeline(view.mu, view.pipeline, pipeline->get());
  CLICKDIFF_RETURN_IF_ERROR((*pipeline)->RequestStaleMasks());

  // Declared after the pipeline, so it stops before the pipeline goes: each new version asks the
  // pipeline to redraw stale masks.
  std::unique_ptr<ContinuousTrainer> trainer;
  if (config.trainer.continuous) {
    std::shared_ptr<const ServingModel> served = models.Get();
    Result<model::Segmenter> copy =
        model::CheckpointStore::Copy(*served->segmenter, "the served model", compute->device);
    if (!copy.ok()) return copy.status().WithContext("trainer");
    ContinuousTrainerOptions options;
    options.trainer = TrainerOptionsFrom(config);
    options.snapshot_every_steps = config.trainer.snapshot_every_steps;
    options.snapshot_seconds = config.trainer.snapshot_seconds;
    options.recent_weight = config.trainer.recent_weight;
    options.keep_versions = static_cast<uint64_t>(config.trainer.keep_versions);
    options.steps_per_click = config.trainer.steps_per_click;
    options.start_steps = stored->steps;  // 0 unless a stored version is resumed
    options.start_untrained = !stored->model.has_value() && config.model.checkpoint.empty();
    options.serving_devices = serving->devices;
    const TeacherConfig& t = config.teacher;
    TeacherOptions& teacher = options.teacher;
    teacher.enabled = t.enabled;
    teacher.mode = t.mode == "twin" ? TeacherMode::kTwin : TeacherMode::kEma;
    teacher.ema_decay = t.ema_decay;
    teacher.samples = t.samples;
    teacher.steps = t.steps;
    teacher.confidence = t.confidence;
    teacher.weight = t.weight;
    teacher.ramp_steps = t.ramp_steps;
    teacher.images_per_round = t.images_per_round;
    teacher.memory_budget_mb = config.sampler.memory_budget_mb;
    options.lineage = lineage;
    options.updates_topic = config.kafka.topics.model_updates;
    trainer = std::make_unique<ContinuousTrainer>(
        store->get(), &models, producer->get(), std::move(copy).value(), served->version,
        std::move(options), [&](uint64_t) {
          if (Status s = (*pipeline)->RequestStaleMasks(); !s.ok()) {
            spdlog::error("redrawing masks for a new version: {}", s.ToString());
          }
        });
  }
  Lend<ContinuousTrainer> lent_trainer(trainer_view.mu, trainer_view.trainer, trainer.get());

  KafkaConsumer::Callbacks callbacks;
  callbacks.stored_offset = [&](const std::string& topic, int32_t partition) {
    // Events of a revoked partition may still be inside the graph: let intake apply them (and
    // store their offsets) first, or they would be read again from an older offset.
    (*pipeline)->WaitForIntake();
    return (*store)->GetOffset(topic, partition);
  };
  callbacks.on_message = [&](KafkaMessage message) { (*pipeline)->Admit(std::move(message)); };
  std::atomic<bool> fatal{false};
  Status fatal_status;
  std::mutex fatal_mu;
  callbacks.on_error = [&](const Status& error) {
    spdlog::error("kafka consumer: {}", error.ToString());
    if (error.code() == StatusCode::kInternal) {
      std::lock_guard<std::mutex> lock(fatal_mu);
      fatal_status = error;
      fatal.store(true);
    }
  };
  const KafkaTopics& t = config.kafka.topics;
  // Declared last, so it is destroyed first: its poll thread calls into everything above.
  std::unique_ptr<KafkaConsumer> consumer;
  Result<std::unique_ptr<KafkaConsumer>> created = KafkaConsumer::Create(
      config.kafka, {t.images, t.clicks, t.labels}, callbacks, endpoints.bootstrap_servers);
  if (!created.ok()) return created.status().WithContext("kafka consumer");
  consumer = std::move(created).value();
  consumer_view.store(consumer.get());
  CLICKDIFF_RETURN_IF_ERROR(consumer->Start());

  CLICKDIFF_RETURN_IF_ERROR(WriteRuntimeFile(config, endpoints));
  spdlog::info("clickdiffd ready: kafka {}, masks on {}, queries on {}, store {}",
               endpoints.bootstrap_servers, endpoints.publish_endpoint, endpoints.query_endpoint,
               config.store.path);
  if (on_ready) on_ready(endpoints);

  auto last_report = std::chrono::steady_clock::now();
  while (!stop.load() && !fatal.load() && (*pipeline)->failure().ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    (*pipeline)->Tick();
    if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(30)) {
      last_report = std::chrono::steady_clock::now();
      PipelineCounters c = (*pipeline)->counters();
      spdlog::info("events {} (duplicates {}, dead letters {}), masks {}, in flight {}", c.admitted,
                   c.duplicates, c.dead_letters, c.masks, c.in_flight);
      if (trainer) {
        TrainerCounters tc = trainer->counters();
        Status trouble = trainer->failure();
        spdlog::info(
            "trainer: model version {}, {} steps{}, loss {:.4f}, {} examples, {} "
            "pseudo-labels{}",
            tc.version, tc.steps, tc.waiting ? " (budget spent, waiting)" : "", tc.loss,
            tc.examples, tc.pseudo_labels, trouble.ok() ? "" : "; " + trouble.ToString());
      }
    }
  }

  spdlog::info("stopping: closing intake, draining the graph");
  consumer_view.store(nullptr);
  consumer->Stop();
  if (trainer) trainer->Stop();
  (*pipeline)->Drain();
  PipelineCounters c = (*pipeline)->counters();
  Status flushed = (*producer)->Flush(std::chrono::seconds(10));
  if (!flushed.ok()) spdlog::error("kafka producer: {}", flushed.ToString());
  CLICKDIFF_RETURN_IF_ERROR((*store)->Flush());
  RemoveRuntimeFile(config);
  spdlog::info("stopped: {} events, {} dead letters, {} masks published", c.admitted,
               c.dead_letters, c.masks);
  if (fatal.load()) {
    std::lock_guard<std::mutex> lock(fatal_mu);
    return fatal_status;
  }
  // A store or dead-letter failure stopped intake without storing the offset: the event is read
  // again after a restart.
  return (*pipeline)->failure();
}

}  // namespace clickdiff
