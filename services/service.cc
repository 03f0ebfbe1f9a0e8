#include "services/service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "base/decimal.h"
#include "config/model_options.h"
#include "io/keys.h"
#include "model/checkpoint_store.h"
#include "nodes/evaluator.h"

namespace clickdiff {
namespace {

constexpr std::chrono::milliseconds kTickPeriod{200};
constexpr std::chrono::seconds kReportPeriod{30};
// How long an assignment waits for the cluster id its stored offsets are checked against.
constexpr std::chrono::seconds kClusterIdWait{5};

// Where the model versions come from: a service restarted with another model does not resume
// them (it continues their numbering, so no cached mask of theirs passes for current).
std::string LineageOf(const Config& config) {
  const ModelConfig& m = config.model;
  return std::string(model::MethodName(m.method)) + " from " +
         (m.checkpoint.empty() ? std::string("scratch") : m.checkpoint) + ", " +
         std::to_string(m.num_classes) + " classes, grid " + std::to_string(m.resolution);
}

}  // namespace

std::vector<std::string> ServiceTopics(const KafkaConfig& kafka) {
  const KafkaTopics& t = kafka.topics;
  std::vector<std::string> topics = {t.images, t.clicks, t.labels, t.model_updates, t.metrics};
  if (!t.masks.empty()) topics.push_back(t.masks);
  for (const std::string& in : {t.images, t.clicks, t.labels}) topics.push_back(in + t.dlq_suffix);
  return topics;
}

Service::Service(const Config& config) : config_(config), lineage_(LineageOf(config)) {
  endpoints_.pid = static_cast<int64_t>(getpid());
}

Service::~Service() { (void)Stop(); }

Result<std::unique_ptr<Service>> Service::Start(const Config& config) {
  std::unique_ptr<Service> service(new Service(config));
  if (Status started = service->StartParts(); !started.ok()) {
    (void)service->Stop();  // whatever did start goes, in order
    return started;
  }
  return service;
}

Status Service::StartParts() {
  Result<ServingPlan> serving = PlanServing(config_);
  if (!serving.ok()) return serving.status();
  config_.sampler.shards = serving->shards;
  serving_devices_ = serving->devices;
  // Sampler threads and the trainer each run LibTorch ops with compute.torch_threads threads; by
  // default they split the cores between them instead of each taking all of them. The preview
  // thread is left out: it works a fraction of a second per click, and borrows.
  const int workers = std::max(1, config_.sampler.shards) + (config_.trainer.continuous ? 1 : 0);
  if (config_.compute.torch_threads == 0) {
    config_.compute.torch_threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / workers);
  }
  Result<Compute> compute = SetUpCompute(config_);
  if (!compute.ok()) return compute.status();
  device_ = compute->device;

  Result<std::unique_ptr<Store>> store = Store::Open(config_.store);
  if (!store.ok()) return store.status().WithContext("store");
  store_ = std::move(store).value();
  cache_ = std::make_unique<MaskCache>(store_.get());
  CLICKDIFF_RETURN_IF_ERROR(StartBroker());
  CLICKDIFF_RETURN_IF_ERROR(LoadModel());

  Result<std::unique_ptr<ZmqServer>> zmq = ZmqServer::Bind(config_.zmq);
  if (!zmq.ok()) return zmq.status().WithContext("zeromq");
  zmq_ = std::move(zmq).value();
  endpoints_.publish_endpoint = zmq_->publish_endpoint();
  endpoints_.query_endpoint = zmq_->query_endpoint();
  endpoints_.server_public_key = zmq_->server_public_key();
  // Current masks from the store, so a subscriber gets them even before anything is redrawn.
  CLICKDIFF_RETURN_IF_ERROR(
      store_->Scan(Family::kMasks, "", [&](std::string_view, std::string_view value) {
        v1::MaskResult mask;
        if (mask.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          zmq_->Remember(mask);
        }
        return true;
      }));
  CLICKDIFF_RETURN_IF_ERROR(ContinueMaskSequence());

  Result<std::unique_ptr<KafkaProducer>> producer =
      KafkaProducer::Create(config_.kafka, endpoints_.bootstrap_servers);
  if (!producer.ok()) return producer.status().WithContext("kafka producer");
  producer_ = std::move(producer).value();

  CLICKDIFF_RETURN_IF_ERROR(StartTrainer());
  Result<model::Aggregator> aggregator =
      MakeAggregator(config_.aggregator, models_.Get()->segmenter->options().num_classes);
  if (!aggregator.ok()) return aggregator.status();
  PipelineDeps deps{store_.get(), producer_.get(), zmq_.get(), &models_, nullptr, nullptr, nullptr};
  if (trainer_) deps.on_stored = [this](const std::string& key) { trainer_->Touch(key); };
  if (trainer_ && config_.teacher.enabled && config_.teacher.clicked_masks) {
    // Only a trainer that learns from served masks needs to read new ones (every clicked image
    // gets one per version).
    deps.on_mask_stored = [this](const std::string& key) { trainer_->TouchMask(key); };
  }
  deps.on_saturation = [this](bool saturated) {
    if (!consumer_) return;
    if (saturated) {
      consumer_->Pause();
    } else {
      consumer_->Resume();
    }
  };
  Result<std::unique_ptr<Pipeline>> pipeline =
      Pipeline::Create(config_, std::move(deps), std::move(aggregator).value());
  if (!pipeline.ok()) return pipeline.status();
  pipeline_ = std::move(pipeline).value();
  pipeline_->RequestStaleMasks();
  if (trainer_) CLICKDIFF_RETURN_IF_ERROR(trainer_->Start());
  zmq_->SetQueryHandler([this](const v1::Query& query) { return Answer(query); });

  CLICKDIFF_RETURN_IF_ERROR(StartConsumer());
  CLICKDIFF_RETURN_IF_ERROR(WriteRuntimeFile(config_, endpoints_));
  ticker_ = std::thread([this] { TickLoop(); });
  spdlog::info("clickdiffd ready: kafka {}, masks on {}, queries on {}, store {}",
               endpoints_.bootstrap_servers, endpoints_.publish_endpoint, endpoints_.query_endpoint,
               config_.store.path);
  return Status::Ok();
}

Status Service::StartBroker() {
  if (config_.mode == Mode::kExternal) {
    endpoints_.bootstrap_servers = config_.kafka.bootstrap_servers;
    return Status::Ok();
  }
  Result<std::unique_ptr<EmbeddedBroker>> started =
      EmbeddedBroker::Start(config_.kafka.embedded_brokers);
  if (!started.ok()) return started.status().WithContext("embedded broker");
  broker_ = std::move(started).value();
  for (const std::string& topic : ServiceTopics(config_.kafka)) {
    CLICKDIFF_RETURN_IF_ERROR(broker_->CreateTopic(topic, config_.kafka.partitions));
  }
  endpoints_.bootstrap_servers = broker_->bootstrap_servers();
  spdlog::info("embedded Kafka broker at {}", endpoints_.bootstrap_servers);
  return Status::Ok();
}

// The newest version the service trained itself, from the configured model, wins over that model;
// versions of another lineage are not resumed, and the configured model continues their numbering.
Status Service::LoadModel() {
  versions_ = std::make_unique<VersionStore>(
      store_.get(), lineage_, static_cast<uint64_t>(config_.trainer.keep_versions),
      static_cast<uint64_t>(config_.trainer.keep_curve_versions));
  Result<StoredVersions> stored = versions_->LoadLatest(device_);
  if (!stored.ok()) return stored.status().WithContext("model");
  stored_ = std::move(stored).value();
  auto serving = std::make_shared<ServingModel>();
  if (stored_.model.has_value()) {
    spdlog::info("serving model version {} from the store", stored_.model->version);
    *serving = *stored_.model;
    const std::string warning =
        ModelFileWarnings(config_, serving->segmenter->options(),
                          "stored model version " + std::to_string(serving->version));
    if (!warning.empty()) spdlog::warn("{}", warning);
  } else if (config_.model.checkpoint.empty()) {
    Result<model::SegmenterOptions> options = SegmenterOptionsFrom(config_);
    if (!options.ok()) return options.status().WithContext("model");
    Result<model::Segmenter> fresh = model::Segmenter::Create(*options, device_);
    if (!fresh.ok()) return fresh.status().WithContext("model");
    spdlog::warn(
        "model.checkpoint is empty: serving an untrained {} model (version 0); train one "
        "with `clickdiff train` and set model.checkpoint",
        model::MethodName(config_.model.method));
    serving->segmenter = std::make_shared<model::Segmenter>(std::move(fresh).value());
    serving->version = 0;
  } else {
    Result<model::Segmenter> loaded =
        model::CheckpointStore::Load(config_.model.checkpoint, device_);
    if (!loaded.ok()) return loaded.status().WithContext("model");
    if (loaded->options().num_classes != config_.model.num_classes) {
      return InvalidArgument("model: " + config_.model.checkpoint + " has " +
                             std::to_string(loaded->options().num_classes) +
                             " classes but model.num_classes is " +
                             std::to_string(config_.model.num_classes));
    }
    CLICKDIFF_RETURN_IF_ERROR(
        CheckModelColor(config_, loaded->options(), config_.model.checkpoint).WithContext("model"));
    const std::string warning =
        ModelFileWarnings(config_, loaded->options(), config_.model.checkpoint);
    if (!warning.empty()) spdlog::warn("{}", warning);
    serving->segmenter = std::make_shared<model::Segmenter>(std::move(loaded).value());
    serving->version = 1;
    spdlog::info("serving {} ({}) as model version 1", config_.model.checkpoint,
                 model::MethodName(config_.model.method));
  }
  if (!stored_.model.has_value() && stored_.newest > 0) serving->version = stored_.newest + 1;
  CLICKDIFF_RETURN_IF_ERROR(AddReplicas(*serving, serving_devices_));
  models_.Set(std::move(serving));
  if (serving_devices_.size() > 1) {
    std::string names;
    for (const torch::Device& d : serving_devices_) names += " " + d.str();
    spdlog::info("sampler shards draw on{} in turn (a copy of each version on each)", names);
  }
  spdlog::info("{} sampler thread(s){}, {} torch thread(s) each", config_.sampler.shards,
               config_.trainer.continuous ? " and a trainer" : "", config_.compute.torch_threads);
  return Status::Ok();
}

// Built here, started once the pipeline exists: each new version asks it to redraw stale masks.
Status Service::StartTrainer() {
  if (!config_.trainer.continuous) return Status::Ok();
  std::shared_ptr<const ServingModel> served = models_.Get();
  Result<model::Segmenter> copy =
      model::CheckpointStore::Copy(*served->segmenter, "the served model", device_);
  if (!copy.ok()) return copy.status().WithContext("trainer");
  ContinuousTrainerOptions options;
  options.trainer = config_.trainer;
  options.teacher = config_.teacher;
  options.teacher_memory_budget_mb = config_.sampler.memory_budget_mb;
  options.start_steps = stored_.steps;  // 0 unless a stored version is resumed
  options.start_untrained = !stored_.model.has_value() && config_.model.checkpoint.empty();
  options.serving_devices = serving_devices_;
  options.updates_topic = config_.kafka.topics.model_updates;
  ContinuousTrainerDeps deps{store_.get(), versions_.get(), &models_, producer_.get()};
  // Numbered above every stored version, the unreadable ones LoadLatest skipped included.
  const uint64_t start_version = std::max(served->version, stored_.newest);
  trainer_ = std::make_unique<ContinuousTrainer>(
      deps, std::move(copy).value(), start_version, std::move(options),
      [this](uint64_t) { pipeline_->RequestStaleMasks(); });
  return Status::Ok();
}

Status Service::StartConsumer() {
  KafkaConsumer::Callbacks callbacks;
  callbacks.stored_offset = [this](const std::string& topic, int32_t partition) {
    // Events of a revoked partition may still be inside the graph: let intake apply them (and
    // store their offsets) first, or they would be read again from an older offset.
    pipeline_->WaitForIntake();
    if (topic == config_.kafka.topics.images) pipeline_->ImagesAssigned(partition);
    // An offset belongs to one log: a new broker, or another cluster, starts the partition over.
    const std::string log = consumer_->cluster_id(kClusterIdWait);
    bool changed = false;
    Result<std::optional<int64_t>> start = store_->StartingOffset(topic, partition, log, &changed);
    if (changed) {
      spdlog::warn(
          "kafka consumer: {} [{}] is a new log (cluster '{}') for its stored offset: reading it "
          "from the start (events already applied are known by their ids)",
          topic, partition, log);
    }
    return start;
  };
  callbacks.on_message = [this](KafkaMessage message) { pipeline_->Admit(std::move(message)); };
  callbacks.on_end = [this, images = config_.kafka.topics.images](const std::string& topic,
                                                                  int32_t partition) {
    if (topic == images) pipeline_->ImagesAtEnd(partition);
  };
  callbacks.on_error = [this](const Status& error) {
    spdlog::error("kafka consumer: {}", error.ToString());
    if (error.code() != StatusCode::kInternal) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (fatal_.ok()) fatal_ = error;
    cv_.notify_all();
  };
  const KafkaTopics& t = config_.kafka.topics;
  KafkaConfig kafka = config_.kafka;
  Result<std::string> identity = store_->Identity();
  if (!identity.ok()) return identity.status();
  kafka.instance_id = ResolveInstanceId(config_, *identity);
  if (!kafka.instance_id.empty()) {
    spdlog::info("kafka consumer: static member '{}' of group '{}'", kafka.instance_id,
                 kafka.group_id);
  }
  Result<std::unique_ptr<KafkaConsumer>> created = KafkaConsumer::Create(
      kafka, {t.images, t.clicks, t.labels}, callbacks, endpoints_.bootstrap_servers);
  if (!created.ok()) return created.status().WithContext("kafka consumer");
  consumer_ = std::move(created).value();
  consuming_.store(true, std::memory_order_release);
  return consumer_->Start();
}

Status Service::health() const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fatal_.ok()) return fatal_;
  }
  return pipeline_ ? pipeline_->failure() : Status::Ok();
}

void Service::TickLoop() {
  auto last_report = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, kTickPeriod, [&] { return stopping_; })) {
    lock.unlock();
    pipeline_->Tick();
    if (std::chrono::steady_clock::now() - last_report > kReportPeriod) {
      last_report = std::chrono::steady_clock::now();
      Report();
    }
    lock.lock();
  }
}

Status Service::ContinueMaskSequence() {
  Result<std::optional<std::string>> stored = store_->Get(Family::kMetadata, keys::MaskSequence());
  if (!stored.ok()) return stored.status().WithContext("mask sequence");
  uint64_t after = 0;
  if (stored->has_value()) {
    const std::optional<uint64_t> reserved = ParseDecimal<uint64_t>(**stored);
    if (!reserved) {
      spdlog::warn(
          "the stored mask sequence \"{}\" is corrupt: numbering goes on above the "
          "stored masks' numbers",
          **stored);
    }
    after = reserved.value_or(0);
  }
  zmq_->ContinueSequence(after, [store = store_.get()](uint64_t upto) {
    Store::Batch batch;
    batch.Put(Family::kMetadata, keys::MaskSequence(), std::to_string(upto));
    return store->Write(batch);
  });
  return Status::Ok();
}

void Service::Report() const {
  PipelineCounters c = pipeline_->counters();
  spdlog::info(
      "events {} (duplicates {}, dead letters {}), masks {} ({} previews), in flight {} ({:.1f} "
      "MiB)",
      c.admitted, c.duplicates, c.dead_letters, c.masks, c.previews, c.in_flight,
      static_cast<double>(c.in_flight_bytes) / (1 << 20));
  if (!trainer_) return;
  TrainerCounters tc = trainer_->counters();
  Status trouble = trainer_->failure();
  std::string faults;
  auto fault = [&faults](auto count, const char* what) {
    if (count > 0) faults += ", " + std::to_string(count) + what;
  };
  fault(tc.skipped_steps, " steps skipped (not finite)");
  fault(tc.withheld, " versions withheld (not finite)");
  fault(tc.unreadable, " images unreadable");
  spdlog::info(
      "trainer: model version {}, {} steps{}, loss {:.4f}, {} examples, {} pseudo-labels{}{}",
      tc.version, tc.steps, tc.waiting ? " (budget spent, waiting)" : "", tc.loss, tc.examples,
      tc.pseudo_labels, faults, trouble.ok() ? "" : "; " + trouble.ToString());
}

Status Service::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return stop_result_;
    stopping_ = true;
    stopped_ = true;
  }
  cv_.notify_all();
  spdlog::info("stopping: closing intake, draining the graph");
  if (ticker_.joinable()) ticker_.join();
  if (consumer_) consumer_->Stop();
  if (trainer_) trainer_->Stop();
  if (zmq_) zmq_->SetQueryHandler(nullptr);
  Status failure = health();
  if (pipeline_) {
    pipeline_->Drain();
    PipelineCounters c = pipeline_->counters();
    spdlog::info("stopped: {} events, {} dead letters, {} masks published", c.admitted,
                 c.dead_letters, c.masks);
  }
  if (producer_) {
    Status flushed = producer_->Flush(std::chrono::seconds(10));
    if (!flushed.ok()) spdlog::error("kafka producer: {}", flushed.ToString());
    // What the flush delivered is done with (records owed still go at the next start).
    for (Status settled : {pipeline_ ? pipeline_->SettleOutbox() : Status::Ok(),
                           trainer_ ? trainer_->SettleOutbox() : Status::Ok()}) {
      if (!settled.ok()) spdlog::warn("{}", settled.ToString());
    }
  }
  if (store_) {
    Status flushed = store_->Flush();
    if (!flushed.ok() && failure.ok()) failure = flushed;
    RemoveRuntimeFile(config_);
  }
  // The parts go in the reverse order of their declaration: the consumer first, the store last.
  consumer_.reset();
  pipeline_.reset();
  trainer_.reset();
  producer_.reset();
  zmq_.reset();
  versions_.reset();
  broker_.reset();
  cache_.reset();
  store_.reset();
  // A store or dead-letter failure stopped intake without storing the offset: the event is read
  // again after a restart.
  std::lock_guard<std::mutex> lock(mu_);
  stop_result_ = failure;
  return failure;
}

v1::QueryReply Service::Answer(const v1::Query& query) const {
  v1::QueryReply reply;
  auto fail = [&](std::string why) {
    reply.set_ok(false);
    reply.set_error(std::move(why));
    return reply;
  };
  switch (query.kind()) {
    case v1::Query::KIND_MASK: {
      Result<std::optional<v1::MaskResult>> mask =
          cache_->Current(query.dataset(), query.image_id());
      if (!mask.ok()) return fail(mask.status().message());
      if (!mask->has_value()) {
        return fail("no mask yet for " + query.dataset() + "/" + query.image_id());
      }
      *reply.mutable_mask() = std::move(**mask);
      break;
    }
    case v1::Query::KIND_IMAGE: {
      Result<std::optional<std::string>> bytes =
          store_->Get(Family::kImages, keys::Image(query.dataset(), query.image_id()));
      if (!bytes.ok()) return fail(bytes.status().message());
      v1::StoredImage stored;
      if (!bytes->has_value()) return fail("no image " + query.dataset() + "/" + query.image_id());
      if (!stored.ParseFromString(**bytes)) return fail("the stored image is corrupt");
      *reply.mutable_image() = std::move(*stored.mutable_event());
      break;
    }
    case v1::Query::KIND_STATUS: {
      v1::ServiceStatus* s = reply.mutable_status();
      std::shared_ptr<const ServingModel> model = models_.Get();
      s->set_model_version(model ? model->version : 0);
      s->set_model_clicks_seen(model ? model->clicks_seen : 0);
      PipelineCounters c = pipeline_->counters();
      s->set_images(c.stored.images);
      s->set_clicks(c.stored.clicks);
      s->set_labels(c.stored.labels);
      s->set_masks(c.masks);
      s->set_previews(c.previews);
      if (trainer_) {
        TrainerCounters tc = trainer_->counters();
        s->set_skipped_steps(static_cast<uint64_t>(tc.skipped_steps));
        s->set_withheld_versions(tc.withheld);
        s->set_unreadable_images(tc.unreadable);
      }
      if (consuming_.load(std::memory_order_acquire)) s->set_skipped_records(consumer_->skipped());
      s->set_dead_letters(c.dead_letters);
      s->set_in_flight(c.in_flight);
      s->set_events(c.admitted);
      s->set_evaluated(c.evaluated);
      s->set_bootstrap_servers(endpoints_.bootstrap_servers);
      s->set_publish_endpoint(endpoints_.publish_endpoint);
      s->set_query_endpoint(endpoints_.query_endpoint);
      break;
    }
    case v1::Query::KIND_METRICS: {
      Result<std::vector<v1::Metrics>> metrics =
          Evaluator::VersionMetrics(*store_, query.dataset());
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

}  // namespace clickdiff
