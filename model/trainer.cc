#include "model/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/checkpoint_store.h"

namespace clickdiff::model {
double AverageDecay(double cap, int64_t total_steps) {
  const double t = static_cast<double>(total_steps);
  return std::min(cap, (1 + t) / (10 + t));
}

void FollowAverage(Segmenter& average, const Segmenter& model, double cap, int64_t total_steps,
                   int64_t steps) {
  if (steps <= 0) return;
  torch::NoGradGuard no_grad;
  const double keep = std::pow(AverageDecay(cap, total_steps), static_cast<double>(steps));
  const std::vector<torch::Tensor> from = model.Parameters();
  std::vector<torch::Tensor> to = average.Parameters();
  for (size_t i = 0; i < to.size(); ++i) to[i].mul_(keep).add_(from[i].detach(), 1.0 - keep);
}

void CopyWeights(Segmenter& to, const Segmenter& from) {
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> source = from.Parameters();
  std::vector<torch::Tensor> target = to.Parameters();
  for (size_t i = 0; i < target.size(); ++i) target[i].copy_(source[i]);
  const std::vector<torch::Tensor> source_buffers = from.network()->buffers();
  std::vector<torch::Tensor> target_buffers = to.network()->buffers();
  for (size_t i = 0; i < target_buffers.size(); ++i) target_buffers[i].copy_(source_buffers[i]);
}

bool WeightsFinite(const Segmenter& model) {
  torch::NoGradGuard no_grad;
  auto finite = [](const std::vector<torch::Tensor>& tensors) {
    return std::all_of(tensors.begin(), tensors.end(), [](const torch::Tensor& t) {
      return !t.is_floating_point() || torch::isfinite(t).all().item<bool>();
    });
  };
  return finite(model.Parameters()) && finite(model.network()->buffers());
}

Trainer::Trainer(Segmenter* segmenter, const TrainerOptions& options)
    : segmenter_(segmenter),
      options_(options),
      optimizer_(std::make_unique<torch::optim::Adam>(
          segmenter->Parameters(), torch::optim::AdamOptions(options.learning_rate))),
      rng_(options.seed) {}

const Segmenter& Trainer::Kept() const {
  if (kept_) return *kept_;
  return average_ ? *average_ : *segmenter_;
}

void Trainer::Report(TrainProgress& report) const {
  report.held_out_loss = last_held_out_loss_;
  report.lowest_held_out_loss = lowest_loss_;
  report.kept_step = kept_step_;
  report.kept_held_out_loss = kept_loss_;
}

Status Trainer::Validate(TrainProgress& report) {
  Segmenter& evaluated = Evaluated();
  // The same draws at every evaluation (seeded with options.seed), so losses compare weights.
  Result<float> loss = evaluated.HeldOutLoss(held_out_, options_.batch_size,
                                             options_.validation_draws, options_.seed);
  if (!loss.ok())
    return loss.status().WithContext("held-out loss at step " + std::to_string(steps_done_));
  last_held_out_loss_ = *loss;
  validated_step_ = steps_done_;
  if (!kept_ || *loss < lowest_loss_) lowest_loss_ = *loss;
  if (!kept_ || *loss <= (1 + options_.tolerance) * lowest_loss_) {
    if (!kept_) {
      Result<Segmenter> copy =
          CheckpointStore::Copy(evaluated, "the kept weights", evaluated.device());
      if (!copy.ok()) return copy.status();
      kept_.emplace(std::move(*copy));
    } else {
      CopyWeights(*kept_, evaluated);
    }
    kept_loss_ = *loss;
    kept_step_ = steps_done_;
  }
  Report(report);
  return Status::Ok();
}

Result<TrainProgress> Trainer::Run(const std::vector<TrainingExample>& data,
                                   const ProgressCallback& progress) {
  if (data.empty()) return InvalidArgument("no training examples");
  if (options_.batch_size < 1) return InvalidArgument("batch_size must be >= 1");
  if (options_.max_steps <= 0 && options_.max_seconds <= 0) {
    return InvalidArgument("training needs a budget: max_steps or max_seconds > 0");
  }
  if (options_.average_decay > 0 && !average_) {
    Result<Segmenter> copy =
        CheckpointStore::Copy(*segmenter_, "the weight average", segmenter_->device());
    if (!copy.ok()) return copy.status();
    average_.emplace(std::move(*copy));
  }
  const bool validating = !held_out_.empty() && options_.validate_every > 0;
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::uniform_int_distribution<size_t> pick(0, data.size() - 1);
  std::vector<TrainingExample> batch(static_cast<size_t>(options_.batch_size));
  TrainProgress report;
  report.skipped_steps = skipped_steps_;
  Report(report);
  double loss_sum = 0;
  int64_t loss_count = 0, steps = 0;
  for (;;) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const bool out_of_steps = options_.max_steps > 0 && steps >= options_.max_steps;
    const bool out_of_time = options_.max_seconds > 0 && elapsed >= options_.max_seconds;
    if (out_of_steps || out_of_time) break;
    for (auto& ex : batch) ex = data[pick(rng_)];
    auto loss = segmenter_->TrainStep(batch, *optimizer_);
    if (!loss.ok()) return loss.status().WithContext("step " + std::to_string(steps_done_ + 1));
    ++steps;
    ++steps_done_;
    if (std::isfinite(*loss)) {
      if (average_) FollowAverage(*average_, *segmenter_, options_.average_decay, steps_done_, 1);
      loss_sum += *loss;
      ++loss_count;
    } else {
      // Skipped by TrainStep: the weights are unchanged; the step still spends the budget, so
      // a batch that keeps failing cannot hold the trainer in a loop.
      ++skipped_steps_;
    }
    report.skipped_steps = skipped_steps_;
    const double now = std::chrono::duration<double>(Clock::now() - start).count();
    report.step = steps_done_;
    report.loss = loss_count > 0 ? static_cast<float>(loss_sum / loss_count) : *loss;
    report.steps_per_second = steps / std::max(now, 1e-9);
    report.elapsed_seconds = now;
    const bool last = (options_.max_steps > 0 && steps >= options_.max_steps) ||
                      (options_.max_seconds > 0 && now >= options_.max_seconds);
    if (validating && (steps_done_ % options_.validate_every == 0 || last)) {
      CLICKDIFF_RETURN_IF_ERROR(Validate(report));
    }
    if (options_.log_every > 0 && (steps % options_.log_every == 0 || last)) {
      if (progress) progress(report);
      loss_sum = 0;
      loss_count = 0;
    }
  }
  // The weights a Run ends with are evaluated too (here when the clock ran out between steps).
  if (validating && steps > 0 && validated_step_ != steps_done_) {
    CLICKDIFF_RETURN_IF_ERROR(Validate(report));
  }
  return report;
}

}  // namespace clickdiff::model
