#include "nodes/continuous_trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "model/checkpoint_store.h"
#include "nodes/intake.h"
#include "schemas/events.pb.h"

namespace clickdiff {

const char* const ContinuousTrainer::kCurrentVersionKey = "model:current";
const char* const ContinuousTrainer::kLineageKey = "model:lineage";

namespace {

// Supervision is re-read from the store at most this often (a full scan).
constexpr std::chrono::seconds kReloadPeriod{2};

}  // namespace

std::string ContinuousTrainer::ModelKey(uint64_t version) {
  char key[32];
  std::snprintf(key, sizeof key, "%020llu", static_cast<unsigned long long>(version));
  return key;
}

Result<StoredVersions> ContinuousTrainer::LoadLatest(const Store& store, torch::Device device,
                                                     const std::string& lineage) {
  StoredVersions stored;
  Result<std::optional<std::string>> current = store.Get(Family::kMetadata, kCurrentVersionKey);
  if (!current.ok()) return current.status();
  if (!current->has_value()) return stored;
  try {
    stored.newest = std::stoull(**current);
  } catch (const std::exception&) {
    return DataLoss("store: the current model version '" + **current + "' is not a number");
  }
  Result<std::optional<std::string>> from = store.Get(Family::kMetadata, kLineageKey);
  if (!from.ok()) return from.status();
  if (from->value_or("") != lineage) {
    spdlog::warn("the store's model versions (up to {}) come from '{}', not '{}': starting anew",
                 stored.newest, from->value_or(""), lineage);
    return stored;
  }
  Result<std::optional<std::string>> bytes = store.Get(Family::kModels, ModelKey(stored.newest));
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) {
    return DataLoss("store: model version " + std::to_string(stored.newest) + " is missing");
  }
  Result<model::Segmenter> segmenter = model::CheckpointStore::FromBytes(
      **bytes, "stored model version " + std::to_string(stored.newest), device);
  if (!segmenter.ok()) return segmenter.status();
  ServingModel serving;
  serving.segmenter = std::make_shared<model::Segmenter>(std::move(segmenter).value());
  serving.version = stored.newest;
  stored.model = std::move(serving);
  return stored;
}

ContinuousTrainer::ContinuousTrainer(Store* store, ModelSlot* slot, KafkaProducer* producer,
                                     model::Segmenter start, uint64_t start_version,
                                     ContinuousTrainerOptions options,
                                     std::function<void(uint64_t)> on_version)
    : store_(store),
      slot_(slot),
      producer_(producer),
      segmenter_(std::move(start)),
      trainer_(&segmenter_, options.trainer),
      options_(std::move(options)),
      on_version_(std::move(on_version)),
      snapshot_time_(std::chrono::steady_clock::now()) {
  counters_.version = start_version;
  thread_ = std::thread([this] { Run(); });
}

ContinuousTrainer::~ContinuousTrainer() { Stop(); }

void ContinuousTrainer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

TrainerCounters ContinuousTrainer::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

Status ContinuousTrainer::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

bool ContinuousTrainer::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void ContinuousTrainer::Run() {
  std::chrono::seconds backoff{1};
  for (;;) {
    Status s = Status::Ok();
    try {
      s = TrainOnce();
    } catch (const std::exception& e) {
      s = Internal(std::string("trainer: ") + e.what());
    }
    std::unique_lock<std::mutex> lock(mu_);
    failure_ = s;
    if (stopping_) return;
    if (s.ok()) {
      backoff = std::chrono::seconds(1);
      continue;
    }
    spdlog::error("trainer: {}; serving version {} and retrying in {} s", s.ToString(),
                  counters_.version, backoff.count());
    cv_.wait_for(lock, backoff, [&] { return stopping_; });
    backoff = std::min(backoff * 2, std::chrono::seconds(60));
    replay_time_.reset();  // read the store again
  }
}

// Reads the supervision again and weights it: examples whose supervision changed since the last
// snapshot are repeated `recent_weight` times (rounded; at least once), so they are drawn more.
Status ContinuousTrainer::Reload() {
  const model::SegmenterOptions& model_options = segmenter_.options();
  Result<Replay> replay = LoadReplay(*store_, model_options.resolution, model_options.num_classes);
  if (!replay.ok()) return replay.status().WithContext("trainer replay");
  replay_ = std::move(replay).value();
  replay_time_ = std::chrono::steady_clock::now();
  const int64_t repeats = std::max<int64_t>(1, std::llround(options_.recent_weight));
  data_.clear();
  for (const ReplayExample& e : replay_.examples) {
    auto seen = snapshotted_revisions_.find(e.image_key);
    const bool changed = seen == snapshotted_revisions_.end() || seen->second != e.revision;
    for (int64_t i = 0; i < (changed ? repeats : 1); ++i) data_.push_back(e.example);
  }
  std::lock_guard<std::mutex> lock(mu_);
  counters_.examples = replay_.examples.size();
  counters_.clicks = replay_.clicks;
  counters_.labels = replay_.labels;
  return Status::Ok();
}

// One short run, then a snapshot when one is due. Waits (up to a second, or until Stop) while
// there is nothing to train on.
Status ContinuousTrainer::TrainOnce() {
  if (!replay_time_ || std::chrono::steady_clock::now() - *replay_time_ >= kReloadPeriod) {
    CLICKDIFF_RETURN_IF_ERROR(Reload());
  }
  if (data_.empty()) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
    snapshot_time_ = std::chrono::steady_clock::now();
    return Status::Ok();
  }
  const int64_t due_steps = steps_at_snapshot_ + options_.snapshot_every_steps;
  trainer_.SetBudget(
      std::max<int64_t>(1, std::min(options_.run_steps, due_steps - trainer_.steps_done())), 0);
  Result<model::TrainProgress> progress = trainer_.Run(data_, {});
  if (!progress.ok()) return progress.status().WithContext("trainer");
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.steps = trainer_.steps_done();
    counters_.loss = progress->loss;
  }
  const double since =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - snapshot_time_).count();
  if (stopping() || (trainer_.steps_done() < due_steps && since < options_.snapshot_seconds)) {
    return Status::Ok();
  }
  CLICKDIFF_RETURN_IF_ERROR(Snapshot());
  snapshotted_revisions_.clear();
  for (const ReplayExample& e : replay_.examples) snapshotted_revisions_[e.image_key] = e.revision;
  replay_time_.reset();  // re-weight: what the new version learnt is no longer new
  return Status::Ok();
}

Status ContinuousTrainer::Snapshot() {
  Result<std::string> bytes = model::CheckpointStore::ToBytes(segmenter_);
  if (!bytes.ok()) return bytes.status();
  TrainerCounters c = counters();
  const uint64_t version = c.version + 1;
  // The served copy is built before anything is published, so no one can see a version that is
  // not fully loaded.
  Result<model::Segmenter> serving = model::CheckpointStore::FromBytes(
      *bytes, "model version " + std::to_string(version), segmenter_.device());
  if (!serving.ok()) return serving.status();

  Store::Batch batch;
  batch.Put(Family::kModels, ModelKey(version), *bytes);
  batch.Put(Family::kMetadata, kCurrentVersionKey, std::to_string(version));
  batch.Put(Family::kMetadata, kLineageKey, options_.lineage);
  if (options_.keep_versions > 0 && version > options_.keep_versions) {
    batch.Delete(Family::kModels, ModelKey(version - options_.keep_versions));
  }
  CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));

  auto model = std::make_shared<ServingModel>();
  model->segmenter = std::make_shared<model::Segmenter>(std::move(serving).value());
  model->version = version;
  slot_->Set(std::move(model));
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.version = version;
  }
  steps_at_snapshot_ = trainer_.steps_done();
  snapshot_time_ = std::chrono::steady_clock::now();
  spdlog::info("model version {}: {} steps, loss {:.4f}, {} examples ({} clicks, {} labels)",
               version, c.steps, c.loss, c.examples, c.clicks, c.labels);

  if (producer_ != nullptr && !options_.updates_topic.empty()) {
    v1::ModelUpdate update;
    update.set_model_version(version);
    update.set_method(model::MethodName(segmenter_.options().method));
    update.set_train_steps(static_cast<uint64_t>(c.steps));
    update.set_train_loss(c.loss);
    update.set_clicks_seen(c.clicks);
    update.set_labels_seen(c.labels);
    update.set_checkpoint_key(ModelKey(version));
    update.set_timestamp_ms(NowMs());
    Status produced =
        producer_->Produce(options_.updates_topic, ModelKey(version), update.SerializeAsString());
    if (!produced.ok()) spdlog::warn("model-updates: {}", produced.ToString());
  }
  if (on_version_) on_version_(version);
  return Status::Ok();
}

}  // namespace clickdiff
