#include "learning/teacher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "model/checkpoint_store.h"

namespace clickdiff {

Teacher::Teacher(const TeacherConfig& config, int64_t memory_budget_mb, Store* store)
    : config_(config), memory_budget_mb_(memory_budget_mb), store_(store) {}

Status Teacher::Start(const model::Segmenter& student, uint64_t version, bool student_untrained,
                      const VersionStore& versions, const model::TrainerOptions& trainer) {
  if (!config_.enabled) return Status::Ok();
  if (!average_.has_value()) {
    Result<model::Segmenter> average =
        model::CheckpointStore::Copy(student, "the moving average", student.device());
    if (!average.ok()) return average.status().WithContext("teacher");
    average_ = std::move(average).value();
  }
  if (config_.mode == TeacherMode::kTwin && !twin_.has_value()) {
    Result<model::Segmenter> twin = StartTwin(student, version, student_untrained, versions);
    if (!twin.ok()) return twin.status().WithContext("twin");
    twin_ = std::move(twin).value();
    model::TrainerOptions options = trainer;
    options.seed += 1;  // batches of its own
    twin_trainer_ = std::make_unique<model::Trainer>(&*twin_, options);
  }
  return Status::Ok();
}

// The twin stored with the start version when there is one; otherwise a fresh student gets a twin
// initialised on its own (CPS needs two different networks), and a student that starts from
// trained weights gets a copy of them (an untrained twin's labels would only hold it back) with
// training noise of its own, which its own batches and pseudo-labels then move apart.
Result<model::Segmenter> Teacher::StartTwin(const model::Segmenter& student, uint64_t version,
                                            bool student_untrained,
                                            const VersionStore& versions) const {
  const torch::Device device = student.device();
  Result<std::optional<model::Segmenter>> stored = versions.LoadTwin(version, device);
  if (!stored.ok()) {
    spdlog::warn("twin: {}; starting another", stored.status().ToString());
  } else if (stored->has_value()) {
    spdlog::info("twin: the one stored with version {}", version);
    return std::move(**stored);
  }
  const uint64_t seed = student.options().seed ^ 0x9E3779B97F4A7C15ull;
  if (student_untrained) {
    model::SegmenterOptions options = student.options();
    options.seed = seed;  // weights and training noise of its own
    spdlog::info("twin: initialised on its own");
    return model::Segmenter::Create(options, device);
  }
  Result<model::Segmenter> copy = model::CheckpointStore::Copy(student, "the twin", device);
  if (!copy.ok()) return copy.status();
  copy->ReseedTraining(seed);
  spdlog::info("twin: a copy of the start model");
  return copy;
}

void Teacher::Follow(const model::Segmenter& student, int64_t total_steps, int64_t steps) {
  if (!average_.has_value()) return;
  model::FollowAverage(*average_, student, config_.ema_decay, total_steps, steps);
}

void Teacher::ResetAverage(const model::Segmenter& weights) {
  if (average_.has_value()) model::CopyWeights(*average_, weights);
}

const model::Segmenter& Teacher::Served(const model::Segmenter& student) const {
  return average_.has_value() ? *average_ : student;
}

Status Teacher::TrainTwin(int64_t steps, const std::vector<model::TrainingExample>& data) {
  if (!twin_trainer_ || steps <= 0 || data.empty()) return Status::Ok();
  twin_trainer_->SetBudget(steps, 0);
  Result<model::TrainProgress> trained = twin_trainer_->Run(data, {});
  return trained.ok() ? Status::Ok() : trained.status().WithContext("twin");
}

double Teacher::RampedWeight(int64_t total_steps) const {
  const double ramp = config_.ramp_steps > 0
                          ? std::min(1.0, static_cast<double>(total_steps) /
                                              static_cast<double>(config_.ramp_steps))
                          : 1.0;
  return config_.weight * ramp;
}

double Teacher::ClickedMaskShare(int64_t total_steps) const {
  if (!config_.enabled || !config_.clicked_masks) return 0;
  return std::min(1.0, RampedWeight(total_steps));
}

uint64_t Teacher::AddPseudoLabels(const Replay& replay, Learner learner, int64_t total_steps,
                                  double focal_alpha,
                                  std::vector<model::TrainingExample>& data) const {
  // The ramped weight of paper 004 (0 until the first round). At weight 1 a confident pixel weighs
  // what an unclicked pixel of a click map does (1 - alpha of the focal loss, not alpha): a
  // pseudo-labelled image then counts about as much as a clicked one instead of drowning the
  // clicks, and unsure pixels weigh next to nothing.
  const double weight = RampedWeight(total_steps) * (1 - focal_alpha) / focal_alpha;
  if (!config_.enabled || weight <= 0) return 0;
  std::vector<const StoredPseudo*> labelled;
  for (const UnsupervisedImage& u : replay.unsupervised) {
    if (u.For(learner).has_value()) labelled.push_back(&*u.For(learner));
  }
  std::stable_sort(labelled.begin(), labelled.end(),
                   [](const auto* a, const auto* b) { return a->version > b->version; });
  labelled.resize(std::min(labelled.size(), replay.examples.size()));
  for (const StoredPseudo* p : labelled) {
    data.push_back(p->example);
    data.back().weight = weight;
  }
  return static_cast<uint64_t>(labelled.size());
}

Status Teacher::Round(uint64_t version, const model::Segmenter& student, const Replay& replay,
                      const std::function<bool()>& stopping,
                      const std::function<void(const std::string&)>& touch) {
  if (twin_.has_value()) {  // cross pseudo-supervision: each labels for the other
    CLICKDIFF_RETURN_IF_ERROR(Label(version, *twin_, Learner::kStudent, replay, stopping, touch));
    return Label(version, student, Learner::kTwin, replay, stopping, touch);
  }
  if (average_.has_value()) {
    return Label(version, *average_, Learner::kStudent, replay, stopping, touch);
  }
  return Status::Ok();
}

// Labels for `learner` the unsupervised images labelled for it longest ago (never first), with the
// vote of `labeller`.
Status Teacher::Label(uint64_t version, const model::Segmenter& labeller, Learner learner,
                      const Replay& replay, const std::function<bool()>& stopping,
                      const std::function<void(const std::string&)>& touch) {
  if (config_.images_per_round <= 0 || replay.unsupervised.empty()) return Status::Ok();
  std::vector<const UnsupervisedImage*> order;
  for (const UnsupervisedImage& u : replay.unsupervised) order.push_back(&u);
  auto age = [learner](const UnsupervisedImage* u) {
    return u->For(learner).has_value() ? u->For(learner)->version + 1 : 0;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const auto* a, const auto* b) { return age(a) < age(b); });
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(config_.images_per_round)));
  const v1::PseudoLabel::Labeller who =
      learner == Learner::kTwin ? v1::PseudoLabel::LABELLER_STUDENT
                                : (twin_.has_value() ? v1::PseudoLabel::LABELLER_TWIN
                                                     : v1::PseudoLabel::LABELLER_AVERAGE);
  const int64_t num_classes = labeller.options().num_classes;
  Store::Batch batch;
  double confident = 0;
  size_t labelled = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const UnsupervisedImage* u : order) {
    if (stopping()) break;
    const uint64_t seed = std::hash<std::string>{}(u->image_key) ^ (version << 32) ^
                          (learner == Learner::kTwin ? 0x5851F42D4C957F2Dull : 0);
    Result<torch::Tensor> drawn = labeller.Sample(u->grid.unsqueeze(0), config_.samples,
                                                  config_.steps, seed, memory_budget_mb_);
    if (!drawn.ok()) return drawn.status().WithContext("teacher");
    v1::PseudoLabel label =
        MakePseudoLabel((*drawn)[0], num_classes, config_.confidence, version, who);
    size_t sure = 0;
    for (char c : label.confident()) sure += c != 0;
    confident += static_cast<double>(sure) / static_cast<double>(label.confident().size());
    batch.Put(Family::kPseudoLabels, PseudoLabelKey(u->image_key, learner),
              label.SerializeAsString());
    ++labelled;
  }
  if (labelled == 0) return Status::Ok();
  CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));
  for (size_t i = 0; i < labelled; ++i) touch(order[i]->image_key);
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

}  // namespace clickdiff
