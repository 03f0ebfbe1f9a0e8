#include "learning/continuous_trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "base/clock.h"
#include "base/guard.h"
#include "config/model_options.h"
#include "model/checkpoint_store.h"
#include "schemas/events.pb.h"

namespace clickdiff {
namespace {

// Supervision (the images touched since) is read again at most this often, so that clicks arriving
// in a burst are learnt together.
constexpr std::chrono::seconds kReloadPeriod{2};

VersionGateOptions GateOptionsFrom(const TrainerConfig& config) {
  VersionGateOptions gate;
  gate.share = config.held_out;
  gate.max_images = config.held_out_images;
  gate.tolerance = config.held_out_tolerance;
  gate.batch_size = config.batch_size;
  gate.seed = config.seed;
  return gate;
}

}  // namespace

ContinuousTrainer::ContinuousTrainer(ContinuousTrainerDeps deps, model::Segmenter start,
                                     uint64_t start_version, ContinuousTrainerOptions options,
                                     std::function<void(uint64_t)> on_version)
    : deps_(deps),
      segmenter_(std::move(start)),
      trainer_(&segmenter_, TrainerOptionsFrom(options.trainer)),
      options_(std::move(options)),
      on_version_(std::move(on_version)),
      teacher_(options_.teacher, options_.teacher_memory_budget_mb, deps.store),
      gate_(GateOptionsFrom(options_.trainer)),
      replay_cache_(segmenter_.options().resolution, segmenter_.options().num_classes,
                    segmenter_.options().unet.image_channels,
                    static_cast<uint64_t>(std::max(0, options_.trainer.replay_budget_mb)) << 20),
      snapshot_time_(std::chrono::steady_clock::now()) {
  counters_.version = start_version;
  counters_.steps = options_.start_steps;
}

ContinuousTrainer::~ContinuousTrainer() { Stop(); }

Status ContinuousTrainer::Start() {
  if (!deps_.store || !deps_.versions || !deps_.slot) {
    return FailedPrecondition("continuous trainer: store, versions and slot are required");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) {
    return FailedPrecondition("continuous trainer: started twice");
  }
  if (options_.trainer.held_out > 0 && options_.trainer.held_out_images > 0 && !served_copy_) {
    Result<model::Segmenter> copy = model::CheckpointStore::Copy(
        segmenter_, "the served version (for the gate)", segmenter_.device());
    if (!copy.ok()) return copy.status();
    served_copy_.emplace(std::move(copy).value());
  }
  if (deps_.producer != nullptr && !options_.updates_topic.empty() && !outbox_) {
    Result<std::unique_ptr<Outbox>> outbox = Outbox::Open(deps_.store, deps_.producer, "trainer");
    if (!outbox.ok()) return outbox.status().WithContext("continuous trainer");
    outbox_ = std::move(outbox).value();
  }
  snapshot_time_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void ContinuousTrainer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ContinuousTrainer::Touch(const std::string& image_key) { replay_cache_.Touch(image_key); }

void ContinuousTrainer::TouchMask(const std::string& image_key) {
  replay_cache_.TouchMask(image_key);
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
    Status s = Guarded("trainer", [&] { return TrainOnce(); });
    std::unique_lock<std::mutex> lock(mu_);
    failure_ = s;
    ++counters_.passes;
    cv_.notify_all();
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

void ContinuousTrainer::Idle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
}

// Reads the supervision again and weights it: examples whose supervision changed since the last
// snapshot are repeated `recent_weight` times (rounded; at least once), so they are drawn more.
Status ContinuousTrainer::Reload() {
  // The last replay goes first: the images it held that wait now are freed before the next one is
  // read, so the replay stays within its budget.
  replay_ = Replay();
  data_.clear();
  twin_data_.clear();
  trained_examples_ = 0;
  Result<Replay> replay = replay_cache_.Refresh(*deps_.store, teacher_.has_twin());
  if (!replay.ok()) return replay.status().WithContext("trainer replay");
  replay_ = std::move(replay).value();
  replay_time_ = std::chrono::steady_clock::now();
  const int64_t repeats = std::max<int64_t>(1, std::llround(options_.trainer.recent_weight));
  const std::vector<size_t> trained = gate_.Split(replay_.examples);
  trained_examples_ = static_cast<int64_t>(trained.size());
  data_.clear();
  // Only the focal loss weighs unclicked pixels; the partial losses never read them.
  const double share = segmenter_.options().loss.kind == model::LossKind::kFocal
                           ? teacher_.ClickedMaskShare(TotalSteps())
                           : 0;
  for (size_t index : trained) {
    const ReplayExample& e = replay_.examples[index];
    auto seen = snapshotted_revisions_.find(e.image_key);
    const bool changed = seen == snapshotted_revisions_.end() || seen->second != e.revision;
    const std::vector<model::TrainingExample> taught = Taught(e, share);
    for (int64_t i = 0; i < (changed ? repeats : 1); ++i) {
      data_.insert(data_.end(), taught.begin(), taught.end());
    }
  }
  const double alpha = segmenter_.options().loss.focal_alpha;
  if (teacher_.has_twin()) {  // the same supervision, its own pseudo-labels
    twin_data_ = data_;
    teacher_.AddPseudoLabels(replay_, Learner::kTwin, TotalSteps(), alpha, twin_data_);
  }
  const uint64_t pseudo =
      teacher_.AddPseudoLabels(replay_, Learner::kStudent, TotalSteps(), alpha, data_);
  std::lock_guard<std::mutex> lock(mu_);
  counters_.pseudo_labels = pseudo;
  counters_.examples = replay_.examples.size();
  counters_.clicks = replay_.clicks;
  counters_.labels = replay_.labels;
  counters_.held_out = gate_.held_out();
  counters_.unreadable = replay_.unreadable;
  return Status::Ok();
}

// One short run, then a snapshot when one is due. Idles (up to a second) while there is nothing
// to train on or the step budget is spent.
Status ContinuousTrainer::TrainOnce() {
  SendAnnouncements();  // acknowledged ones deleted, failed ones or a crash's sent again
  const bool had_twin = teacher_.has_twin();
  CLICKDIFF_RETURN_IF_ERROR(teacher_.Start(segmenter_, counters().version, options_.start_untrained,
                                           *deps_.versions, TrainerOptionsFrom(options_.trainer)));
  if (teacher_.has_twin() != had_twin) replay_time_.reset();  // the twin's replay
  if (!replay_time_ || std::chrono::steady_clock::now() - *replay_time_ >= kReloadPeriod) {
    CLICKDIFF_RETURN_IF_ERROR(Reload());
  }
  const int64_t examples = trained_examples_;
  const int64_t supervision = static_cast<int64_t>(replay_.clicks + replay_.labels);
  const int64_t per_click = options_.trainer.steps_per_click;
  const int64_t left = per_click > 0 ? (per_click * supervision) + retry_credit_ - TotalSteps()
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
    Idle();
    snapshot_time_ = std::chrono::steady_clock::now();
    return Status::Ok();
  }
  const int64_t due_steps = steps_at_snapshot_ + options_.trainer.snapshot_every_steps;
  const int64_t before = trainer_.steps_done();
  trainer_.SetBudget(std::max<int64_t>(1, std::min({options_.run_steps, due_steps - before, left})),
                     0);
  Result<model::TrainProgress> progress = trainer_.Run(data_, {});
  if (!progress.ok()) return progress.status().WithContext("trainer");
  const int64_t ran = trainer_.steps_done() - before;
  teacher_.Follow(segmenter_, TotalSteps(), ran);
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.steps = TotalSteps();
    counters_.loss = progress->loss;
    counters_.skipped_steps = progress->skipped_steps;
  }
  CLICKDIFF_RETURN_IF_ERROR(teacher_.TrainTwin(ran, twin_data_));  // as many steps, its replay
  const double since =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - snapshot_time_).count();
  if (stopping() ||
      (trainer_.steps_done() < due_steps && since < options_.trainer.snapshot_seconds)) {
    return Status::Ok();
  }
  return Round();
}

// A snapshot, then the teacher's pseudo-label round; the replay is read again afterwards.
Status ContinuousTrainer::Round() {
  Result<bool> published = Snapshot();
  if (!published.ok()) return published.status();
  if (!*published) {
    replay_time_.reset();
    return Status::Ok();
  }
  // Images waiting in the store over the replay's budget keep theirs: back at their turn, they are
  // not new.
  for (const ReplayExample& e : replay_.examples) snapshotted_revisions_[e.image_key] = e.revision;
  replay_time_.reset();  // re-weight: what the new version learnt is no longer new
  return teacher_.Round(
      counters().version, segmenter_, replay_, [this] { return stopping(); },
      [this](const std::string& key) { replay_cache_.Touch(key); });
}

void ContinuousTrainer::Refuse(const GateVerdict& verdict) {
  ++refused_since_;
  uint64_t served = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.refused;
    served = counters_.version;
  }
  spdlog::warn(
      "trainer: the snapshot after {} steps is not published: its held-out loss {:.4g} on {} "
      "images is over (1 + {}) x {:.4g}; serving version {} and training again from it",
      TotalSteps(), verdict.loss, verdict.images, options_.trainer.held_out_tolerance,
      verdict.lowest, served);
  // Backtracking: half as many steps get another try from the served weights (the refused run
  // learnt its clicks too long), down to one short run.
  const int64_t half = (trainer_.steps_done() - steps_at_snapshot_) / 2;
  if (half >= options_.run_steps) retry_credit_ += half;
  RestartFrom(*served_copy_);
}

Status ContinuousTrainer::SettleOutbox() { return outbox_ ? outbox_->Settle() : Status::Ok(); }

void ContinuousTrainer::SendAnnouncements() {
  if (!outbox_) return;
  Status sent = outbox_->Pump();
  if (!sent.ok()) spdlog::warn("model-updates: {}", sent.ToString());
}

void ContinuousTrainer::RestartFrom(const model::Segmenter& weights) {
  model::CopyWeights(segmenter_, weights);
  teacher_.ResetAverage(weights);
  steps_at_snapshot_ = trainer_.steps_done();
  snapshot_time_ = std::chrono::steady_clock::now();
}

Status ContinuousTrainer::Withhold() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.withheld;
  }
  std::shared_ptr<const ServingModel> serving = deps_.slot->Get();
  const model::Segmenter* served =
      served_copy_ ? &*served_copy_ : (serving ? serving->segmenter.get() : nullptr);
  if (served == nullptr) {
    return Internal("trainer: the weights after " + std::to_string(TotalSteps()) +
                    " steps are not finite and no version is served to go back to");
  }
  spdlog::error(
      "trainer: the weights after {} steps are not finite: not saved or published; training "
      "again from the served version {}",
      TotalSteps(), serving ? serving->version : counters().version);
  RestartFrom(*served);
  return Status::Ok();
}

Result<bool> ContinuousTrainer::Snapshot() {
  if (!model::WeightsFinite(teacher_.Served(segmenter_))) {
    CLICKDIFF_RETURN_IF_ERROR(Withhold());
    return false;
  }
  Result<std::string> bytes = model::CheckpointStore::ToBytes(teacher_.Served(segmenter_));
  if (!bytes.ok()) return bytes.status();
  TrainerCounters c = counters();
  const uint64_t version = c.version + 1;
  // The served copy is built before anything is published, so no one can see a version that is
  // not fully loaded.
  Result<model::Segmenter> built = model::CheckpointStore::FromBytes(
      *bytes, "model version " + std::to_string(version), segmenter_.device());
  if (!built.ok()) return built.status();
  GateVerdict verdict;
  std::optional<model::Segmenter> next_served;  // the gate's copy, kept once the version is out
  if (served_copy_) {
    Result<GateVerdict> judged = gate_.Judge(*built, *served_copy_);
    if (!judged.ok()) return judged.status().WithContext("gate");
    verdict = *judged;
    if (!verdict.publish) {
      Refuse(verdict);
      return false;
    }
    Result<model::Segmenter> copy = model::CheckpointStore::FromBytes(
        *bytes, "model version " + std::to_string(version), segmenter_.device());
    if (!copy.ok()) return copy.status();
    next_served.emplace(std::move(copy).value());
  }
  auto serving = std::make_shared<ServingModel>();
  serving->segmenter = std::make_shared<model::Segmenter>(std::move(built).value());
  serving->version = version;
  serving->clicks_seen = c.clicks;
  CLICKDIFF_RETURN_IF_ERROR(AddReplicas(*serving, options_.serving_devices, *bytes));

  VersionRecord record;
  v1::ModelUpdate& update = record.update;
  update.set_model_version(version);
  update.set_method(model::MethodName(segmenter_.options().method));
  update.set_train_steps(static_cast<uint64_t>(c.steps));
  update.set_train_loss(c.loss);
  update.set_clicks_seen(c.clicks);
  update.set_labels_seen(c.labels);
  update.set_checkpoint_key(VersionStore::ModelKey(version));
  update.set_timestamp_ms(NowMs());
  update.set_held_out_loss(verdict.loss);
  update.set_held_out_images(static_cast<uint32_t>(verdict.images));
  update.set_refused(refused_since_);
  record.checkpoint = std::move(bytes).value();
  if (const model::Segmenter* twin = teacher_.twin()) {
    Result<std::string> twin_bytes = model::CheckpointStore::ToBytes(*twin);
    if (!twin_bytes.ok()) return twin_bytes.status().WithContext("twin");
    record.twin = std::move(twin_bytes).value();
  }
  // The announcement on model-updates is kept with the version (an outbox record in the same
  // batch), so it is delivered at least once even if the process dies before the broker has it.
  const std::string announcement = update.SerializeAsString();
  CLICKDIFF_RETURN_IF_ERROR(deps_.versions->Save(record, [&](Store::Batch& batch) {
    if (outbox_) {
      outbox_->Put(batch, options_.updates_topic, VersionStore::ModelKey(version), announcement);
    }
  }));

  deps_.slot->Set(std::move(serving));
  if (next_served) served_copy_ = std::move(next_served);
  gate_.Published(verdict);
  refused_since_ = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.version = version;
  }
  steps_at_snapshot_ = trainer_.steps_done();
  snapshot_time_ = std::chrono::steady_clock::now();
  spdlog::info(
      "model version {}: {} steps, loss {:.4f}, {} examples ({} clicks, {} labels), {} "
      "pseudo-labels, held-out loss {:.4g} on {} images",
      version, c.steps, c.loss, c.examples, c.clicks, c.labels, c.pseudo_labels, verdict.loss,
      verdict.images);

  SendAnnouncements();
  if (on_version_) on_version_(version);
  return true;
}

}  // namespace clickdiff
