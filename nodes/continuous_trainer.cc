#include "nodes/continuous_trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "model/checkpoint_store.h"
#include "nodes/intake.h"
#include "nodes/keys.h"
#include "schemas/events.pb.h"

namespace clickdiff {

const char* const ContinuousTrainer::kCurrentVersionKey = "model:current";
const char* const ContinuousTrainer::kLineageKey = "model:lineage";
const char* const ContinuousTrainer::kTwinKey = "model:twin";
const char* const ContinuousTrainer::kTwinVersionKey = "model:twin:version";

namespace {

// Supervision is re-read from the store at most this often (a full scan).
constexpr std::chrono::seconds kReloadPeriod{2};

}  // namespace

std::string ContinuousTrainer::ModelKey(uint64_t version) { return keys::Version(version); }

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
  Result<std::optional<std::string>> update =
      store.Get(Family::kMetadata, keys::ModelUpdate(stored.newest));
  if (!update.ok()) return update.status();
  v1::ModelUpdate record;
  if (update->has_value() && record.ParseFromString(**update)) {
    stored.steps = static_cast<int64_t>(record.train_steps());
  }
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
      replay_cache_(segmenter_.options().resolution, segmenter_.options().num_classes),
      snapshot_time_(std::chrono::steady_clock::now()) {
  counters_.version = start_version;
  counters_.steps = options_.start_steps;
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
    replay_time_.reset();  // read the store again, all of it
    replay_cache_.Invalidate();
  }
}

// Reads the supervision again and weights it: examples whose supervision changed since the last
// snapshot are repeated `recent_weight` times (rounded; at least once), so they are drawn more.
Status ContinuousTrainer::Reload() {
  Result<Replay> replay = replay_cache_.Refresh(*store_, twin_.has_value());
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
  if (twin_.has_value()) twin_data_ = data_;  // the same supervision, its own pseudo-labels
  // Pseudo-labels join with the ramped weight of paper 004 (0 until the first teacher round). At
  // weight 1 a confident pixel weighs what an unclicked pixel of a click map does (1 - alpha of
  // the focal loss, not alpha): a pseudo-labelled image then counts about as much as a clicked
  // one instead of drowning the clicks, and unsure pixels weigh next to nothing.
  const TeacherOptions& t = options_.teacher;
  const double ramp =
      t.ramp_steps > 0
          ? std::min(1.0, static_cast<double>(TotalSteps()) / static_cast<double>(t.ramp_steps))
          : 1.0;
  const double alpha = segmenter_.options().loss.focal_alpha;
  const double weight = t.weight * ramp * (1 - alpha) / alpha;
  // At most as many pseudo-labelled images as supervised ones (the freshest labels first), so that
  // thousands of unclicked images do not crowd the clicks out of the batches either.
  auto add_pseudo_labels = [&](Learner learner, std::vector<model::TrainingExample>& data) {
    std::vector<const StoredPseudo*> labelled;
    for (const UnsupervisedImage& u : replay_.unsupervised) {
      if (t.enabled && u.For(learner).has_value() && weight > 0) {
        labelled.push_back(&*u.For(learner));
      }
    }
    std::stable_sort(labelled.begin(), labelled.end(),
                     [](const auto* a, const auto* b) { return a->version > b->version; });
    labelled.resize(std::min(labelled.size(), replay_.examples.size()));
    for (const StoredPseudo* p : labelled) {
      data.push_back(p->example);
      data.back().weight = weight;
    }
    return static_cast<uint64_t>(labelled.size());
  };
  const uint64_t pseudo = add_pseudo_labels(Learner::kStudent, data_);
  if (twin_.has_value()) add_pseudo_labels(Learner::kTwin, twin_data_);
  std::lock_guard<std::mutex> lock(mu_);
  counters_.pseudo_labels = pseudo;
  counters_.examples = replay_.examples.size();
  counters_.clicks = replay_.clicks;
  counters_.labels = replay_.labels;
  return Status::Ok();
}

// One short run, then a snapshot when one is due. Waits (up to a second, or until Stop) while
// there is nothing to train on or the step budget is spent.
Status ContinuousTrainer::TrainOnce() {
  CLICKDIFF_RETURN_IF_ERROR(StartTeacher());
  if (!replay_time_ || std::chrono::steady_clock::now() - *replay_time_ >= kReloadPeriod) {
    CLICKDIFF_RETURN_IF_ERROR(Reload());
  }
  const int64_t examples = static_cast<int64_t>(replay_.examples.size());
  const int64_t supervision = static_cast<int64_t>(replay_.clicks + replay_.labels);
  const int64_t left = options_.steps_per_click > 0
                           ? options_.steps_per_click * supervision - TotalSteps()
                           : std::numeric_limits<int64_t>::max();
  {
    // Waiting once the budget is spent and its last steps are a version.
    std::lock_guard<std::mutex> lock(mu_);
    const bool waiting = examples > 0 && left <= 0 && trainer_.steps_done() == steps_at_snapshot_;
    if (waiting && !counters_.waiting) {
      spdlog::info("trainer: {} steps for {} clicks and labels spent; waiting for more",
                   TotalSteps(), supervision);
    }
    counters_.waiting = waiting;
  }
  if (examples == 0 || left <= 0) {
    // The steps since the last snapshot become a version before the trainer waits.
    if (trainer_.steps_done() > steps_at_snapshot_ && !stopping()) return Round();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
    snapshot_time_ = std::chrono::steady_clock::now();
    return Status::Ok();
  }
  const int64_t due_steps = steps_at_snapshot_ + options_.snapshot_every_steps;
  const int64_t before = trainer_.steps_done();
  trainer_.SetBudget(std::max<int64_t>(1, std::min({options_.run_steps, due_steps - before, left})),
                     0);
  Result<model::TrainProgress> progress = trainer_.Run(data_, {});
  if (!progress.ok()) return progress.status().WithContext("trainer");
  UpdateAverage(trainer_.steps_done() - before);
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.steps = TotalSteps();
    counters_.loss = progress->loss;
  }
  if (twin_trainer_) {  // as many steps for the twin, on its own replay
    twin_trainer_->SetBudget(trainer_.steps_done() - before, 0);
    Result<model::TrainProgress> twin = twin_trainer_->Run(twin_data_, {});
    if (!twin.ok()) return twin.status().WithContext("twin");
  }
  const double since =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - snapshot_time_).count();
  if (stopping() || (trainer_.steps_done() < due_steps && since < options_.snapshot_seconds)) {
    return Status::Ok();
  }
  return Round();
}

// A snapshot, then the teacher's pseudo-label round; the replay is read again afterwards.
Status ContinuousTrainer::Round() {
  CLICKDIFF_RETURN_IF_ERROR(Snapshot());
  snapshotted_revisions_.clear();
  for (const ReplayExample& e : replay_.examples) snapshotted_revisions_[e.image_key] = e.revision;
  replay_time_.reset();  // re-weight: what the new version learnt is no longer new
  const uint64_t version = counters().version;
  if (twin_.has_value()) {  // cross pseudo-supervision: each labels for the other
    CLICKDIFF_RETURN_IF_ERROR(PseudoLabel(version, *twin_, Learner::kStudent));
    return PseudoLabel(version, segmenter_, Learner::kTwin);
  }
  if (average_.has_value()) return PseudoLabel(version, *average_, Learner::kStudent);
  return Status::Ok();
}

Status ContinuousTrainer::StartTeacher() {
  const TeacherOptions& t = options_.teacher;
  if (!t.enabled) return Status::Ok();
  if (!average_.has_value()) {
    Result<model::Segmenter> average =
        model::CheckpointStore::Copy(segmenter_, "the moving average", segmenter_.device());
    if (!average.ok()) return average.status().WithContext("teacher");
    average_ = std::move(average).value();
  }
  if (t.mode == TeacherMode::kTwin && !twin_.has_value()) {
    Result<model::Segmenter> twin = StartTwin();
    if (!twin.ok()) return twin.status().WithContext("twin");
    twin_ = std::move(twin).value();
    model::TrainerOptions options = options_.trainer;
    options.seed += 1;  // batches of its own
    twin_trainer_ = std::make_unique<model::Trainer>(&*twin_, options);
    replay_time_.reset();  // its replay
  }
  return Status::Ok();
}

// The twin stored with the start version when there is one; otherwise a fresh student gets a twin
// initialised on its own (CPS needs two different networks), and a student that starts from
// trained weights gets a copy of them (an untrained twin's labels would only hold it back) with
// training noise of its own, which its own batches and pseudo-labels then move apart.
Result<model::Segmenter> ContinuousTrainer::StartTwin() const {
  const torch::Device device = segmenter_.device();
  const uint64_t version = counters().version;
  Result<std::optional<std::string>> of = store_->Get(Family::kMetadata, kTwinVersionKey);
  if (!of.ok()) return of.status();
  if (of->value_or("") == std::to_string(version)) {
    Result<std::optional<std::string>> stored = store_->Get(Family::kModels, kTwinKey);
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) {
      Result<model::Segmenter> twin =
          model::CheckpointStore::FromBytes(**stored, "the stored twin", device);
      if (twin.ok()) {
        spdlog::info("twin: the one stored with version {}", version);
        return twin;
      }
      spdlog::warn("twin: {}; starting another", twin.status().ToString());
    }
  }
  const uint64_t seed = segmenter_.options().seed ^ 0x9E3779B97F4A7C15ull;
  if (options_.start_untrained) {
    model::SegmenterOptions options = segmenter_.options();
    options.seed = seed;  // weights and training noise of its own
    spdlog::info("twin: initialised on its own");
    return model::Segmenter::Create(options, device);
  }
  Result<model::Segmenter> copy = model::CheckpointStore::Copy(segmenter_, "the twin", device);
  if (!copy.ok()) return copy.status();
  copy->ReseedTraining(seed);
  spdlog::info("twin: a copy of the start model");
  return copy;
}

void ContinuousTrainer::UpdateAverage(int64_t steps) {
  if (!average_.has_value() || steps <= 0) return;
  torch::NoGradGuard no_grad;
  // `steps` EMA updates against the current student, applied at once. The decay warms up
  // ((1 + t) / (10 + t) after t steps, capped at ema_decay) so that the teacher of a young student
  // is not mostly its random initialisation.
  const double t = static_cast<double>(TotalSteps());
  const double decay = std::min(options_.teacher.ema_decay, (1 + t) / (10 + t));
  const double keep = std::pow(decay, static_cast<double>(steps));
  std::vector<torch::Tensor> student = segmenter_.Parameters();
  std::vector<torch::Tensor> average = average_->Parameters();
  for (size_t i = 0; i < average.size(); ++i) {
    average[i].mul_(keep).add_(student[i].detach(), 1.0 - keep);
  }
}

// Labels for `learner` the unsupervised images labelled for it longest ago (never first), with the
// vote of `labeller`.
Status ContinuousTrainer::PseudoLabel(uint64_t version, const model::Segmenter& labeller,
                                      Learner learner) {
  const TeacherOptions& t = options_.teacher;
  if (t.images_per_round <= 0 || replay_.unsupervised.empty()) return Status::Ok();
  std::vector<const UnsupervisedImage*> order;
  for (const UnsupervisedImage& u : replay_.unsupervised) order.push_back(&u);
  auto age = [learner](const UnsupervisedImage* u) {
    return u->For(learner).has_value() ? u->For(learner)->version + 1 : 0;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const auto* a, const auto* b) { return age(a) < age(b); });
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(t.images_per_round)));
  const v1::PseudoLabel::Labeller who =
      learner == Learner::kTwin ? v1::PseudoLabel::LABELLER_STUDENT
                                : (twin_.has_value() ? v1::PseudoLabel::LABELLER_TWIN
                                                     : v1::PseudoLabel::LABELLER_AVERAGE);
  Store::Batch batch;
  double confident = 0;
  size_t labelled = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const UnsupervisedImage* u : order) {
    if (stopping()) break;
    const uint64_t seed = std::hash<std::string>{}(u->image_key) ^ (version << 32) ^
                          (learner == Learner::kTwin ? 0x5851F42D4C957F2Dull : 0);
    Result<torch::Tensor> drawn =
        labeller.Sample(u->grid.unsqueeze(0), t.samples, t.steps, seed, t.memory_budget_mb);
    if (!drawn.ok()) return drawn.status().WithContext("teacher");
    v1::PseudoLabel label =
        MakePseudoLabel((*drawn)[0], segmenter_.options().num_classes, t.confidence, version, who);
    size_t sure = 0;
    for (char c : label.confident()) sure += c != 0;
    confident += static_cast<double>(sure) / static_cast<double>(label.confident().size());
    batch.Put(Family::kPseudoLabels, PseudoLabelKey(u->image_key, learner),
              label.SerializeAsString());
    ++labelled;
  }
  if (labelled == 0) return Status::Ok();
  CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));
  for (size_t i = 0; i < labelled; ++i) Touch(order[i]->image_key);
  const char* by = who == v1::PseudoLabel::LABELLER_AVERAGE ? "moving average"
                   : who == v1::PseudoLabel::LABELLER_TWIN  ? "twin"
                                                            : "student";
  spdlog::info(
      "{} of version {}: {} pseudo-labels for the {} in {:.1f} s, {:.0f}% of pixels confident", by,
      version, labelled, learner == Learner::kTwin ? "twin" : "student",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
      100.0 * confident / static_cast<double>(labelled));
  return Status::Ok();
}

Status ContinuousTrainer::Snapshot() {
  // With a teacher, the moving average of the student is what gets served: its weights are
  // smoother than the student's last step.
  Result<std::string> bytes =
      model::CheckpointStore::ToBytes(average_.has_value() ? *average_ : segmenter_);
  if (!bytes.ok()) return bytes.status();
  TrainerCounters c = counters();
  const uint64_t version = c.version + 1;
  // The served copy is built before anything is published, so no one can see a version that is
  // not fully loaded.
  Result<model::Segmenter> built = model::CheckpointStore::FromBytes(
      *bytes, "model version " + std::to_string(version), segmenter_.device());
  if (!built.ok()) return built.status();
  auto serving = std::make_shared<ServingModel>();
  serving->segmenter = std::make_shared<model::Segmenter>(std::move(built).value());
  serving->version = version;
  CLICKDIFF_RETURN_IF_ERROR(AddReplicas(*serving, options_.serving_devices, *bytes));

  v1::ModelUpdate update;
  update.set_model_version(version);
  update.set_method(model::MethodName(segmenter_.options().method));
  update.set_train_steps(static_cast<uint64_t>(c.steps));
  update.set_train_loss(c.loss);
  update.set_clicks_seen(c.clicks);
  update.set_labels_seen(c.labels);
  update.set_checkpoint_key(ModelKey(version));
  update.set_timestamp_ms(NowMs());
  Store::Batch batch;
  batch.Put(Family::kModels, ModelKey(version), *bytes);
  batch.Put(Family::kMetadata, keys::ModelUpdate(version), update.SerializeAsString());
  batch.Put(Family::kMetadata, kCurrentVersionKey, std::to_string(version));
  batch.Put(Family::kMetadata, kLineageKey, options_.lineage);
  if (twin_.has_value()) {
    Result<std::string> twin = model::CheckpointStore::ToBytes(*twin_);
    if (!twin.ok()) return twin.status().WithContext("twin");
    batch.Put(Family::kModels, kTwinKey, *twin);
    batch.Put(Family::kMetadata, kTwinVersionKey, std::to_string(version));
  } else {
    batch.Delete(Family::kModels, kTwinKey);  // a twin of another mode's run would be stale
    batch.Delete(Family::kMetadata, kTwinVersionKey);
  }
  if (options_.keep_versions > 0 && version > options_.keep_versions) {
    batch.Delete(Family::kModels, ModelKey(version - options_.keep_versions));
  }
  CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));

  slot_->Set(std::move(serving));
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.version = version;
  }
  steps_at_snapshot_ = trainer_.steps_done();
  snapshot_time_ = std::chrono::steady_clock::now();
  spdlog::info(
      "model version {}: {} steps, loss {:.4f}, {} examples ({} clicks, {} labels), {} "
      "pseudo-labels",
      version, c.steps, c.loss, c.examples, c.clicks, c.labels, c.pseudo_labels);

  if (producer_ != nullptr && !options_.updates_topic.empty()) {
    Status produced =
        producer_->Produce(options_.updates_topic, ModelKey(version), update.SerializeAsString());
    if (!produced.ok()) spdlog::warn("model-updates: {}", produced.ToString());
  }
  if (on_version_) on_version_(version);
  return Status::Ok();
}

}  // namespace clickdiff
