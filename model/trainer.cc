#include "model/trainer.h"

#include <chrono>

namespace clickdiff::model {

Trainer::Trainer(Segmenter* segmenter, const TrainerOptions& options)
    : segmenter_(segmenter),
      options_(options),
      optimizer_(std::make_unique<torch::optim::Adam>(
          segmenter->Parameters(), torch::optim::AdamOptions(options.learning_rate))),
      rng_(options.seed) {}

Result<TrainProgress> Trainer::Run(const std::vector<TrainingExample>& data,
                                   const ProgressCallback& progress) {
  if (data.empty()) return InvalidArgument("no training examples");
  if (options_.batch_size < 1) return InvalidArgument("batch_size must be >= 1");
  if (options_.max_steps <= 0 && options_.max_seconds <= 0) {
    return InvalidArgument("training needs a budget: max_steps or max_seconds > 0");
  }
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::uniform_int_distribution<size_t> pick(0, data.size() - 1);
  std::vector<TrainingExample> batch(static_cast<size_t>(options_.batch_size));
  TrainProgress report;
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
    loss_sum += *loss;
    ++loss_count;
    const double now = std::chrono::duration<double>(Clock::now() - start).count();
    report = {steps_done_, static_cast<float>(loss_sum / loss_count), steps / std::max(now, 1e-9),
              now};
    const bool last = (options_.max_steps > 0 && steps >= options_.max_steps) ||
                      (options_.max_seconds > 0 && now >= options_.max_seconds);
    if (options_.log_every > 0 && (steps % options_.log_every == 0 || last)) {
      if (progress) progress(report);
      loss_sum = 0;
      loss_count = 0;
    }
  }
  return report;
}

}  // namespace clickdiff::model
