// model/trainer.h — the offline training loop: random mini-batches from a fixed set of examples,
// Adam, a step and/or wall-clock budget, and a progress callback.
//
// Which weights to keep. Click supervision is learnt by heart: with every unclicked pixel counted
// as weak background, a long run learns where each training click is, and its masks on other
// images shrink to nothing (docs/experiments.md). So the Trainer can hold
// out some supervised images and judge the weights by their loss on them: the held-out clicks
// say, without any mask, when the model stops generalising. That loss is flat while the masks
// still grow and then climbs steeply, so the weights kept are the latest whose held-out loss is
// within `tolerance` of the lowest so far: the end of the plateau, not its noisy minimum. However
// long the run, the kept weights' held-out loss stays within that tolerance of the lowest seen.
// Optionally the evaluated and kept weights are an exponential moving average of the trained
// ones (smoother than any one step's).
//
// The Trainer does not own the Segmenter (it must outlive the Trainer) but owns the Adam
// optimizer over its parameters, so successive Run() calls continue the same optimisation.
// Under a fixed seed on the CPU (with a fixed thread count) a step-budgeted run is deterministic:
// batches come from the Trainer's own std::mt19937_64 and noise/flips from the Segmenter's
// seeded generator. Not thread-safe: one thread drives a Trainer and its Segmenter.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "base/status.h"
#include "model/segmenter.h"
#include "model/training_example.h"

namespace clickdiff::model {

struct TrainerOptions {
  int64_t batch_size = 8;
  double learning_rate = 2e-3;
  int64_t max_steps = 0;   // 0: no step limit
  double max_seconds = 0;  // 0: no time limit (at least one of the two must be set)
  uint64_t seed = 0;       // batch order
  int64_t log_every = 50;  // progress callback period in steps (and after the last step)
  // Moving average of the weights: decay per step, warmed up as AverageDecay does; 0: none.
  double average_decay = 0;
  // With held-out examples (SetHeldOut): steps between their evaluations (and at the end of each
  // Run), and the noise draws per evaluation (model/segmenter.h HeldOutLoss, in batches of
  // batch_size, seeded with `seed`).
  int64_t validate_every = 100;
  int64_t validation_draws = 4;
  // The weights kept are the latest whose held-out loss is at most (1 + tolerance) x the lowest.
  double tolerance = 0.25;
};

struct TrainProgress {
  int64_t step = 0;             // steps done so far (over all Run calls)
  float loss = 0;               // mean loss over the steps since the previous report
  double steps_per_second = 0;  // over this Run
  double elapsed_seconds = 0;   // of this Run
  // With held-out examples: the latest held-out loss, the lowest, and the step and loss of the
  // kept weights (kept_step 0: none evaluated yet).
  float held_out_loss = 0;
  float lowest_held_out_loss = 0;
  int64_t kept_step = 0;
  float kept_held_out_loss = 0;
  // Steps skipped (over all Run calls) because their loss or gradients were not finite
  // (Segmenter::TrainStep); they count in `step` and the budget.
  int64_t skipped_steps = 0;
};

// The decay of a moving average after `total_steps` steps: (1 + t) / (10 + t), capped at `cap`,
// so that the average of a young model is not mostly its initialisation.
double AverageDecay(double cap, int64_t total_steps);

// `average` moves towards `model` by `steps` updates of AverageDecay(cap, total_steps) applied at
// once. Both must have the same architecture.
void FollowAverage(Segmenter& average, const Segmenter& model, double cap, int64_t total_steps,
                   int64_t steps);

// Sets `to`'s weights (parameters and buffers) to `from`'s, in place, so an optimizer holding
// `to`'s parameters keeps working. Both must have the same architecture.
void CopyWeights(Segmenter& to, const Segmenter& from);

// Whether every parameter and buffer of `model` is finite: a model that is not must never be
// saved or served.
bool WeightsFinite(const Segmenter& model);

using ProgressCallback = std::function<void(const TrainProgress&)>;

class Trainer {
 public:
  // `segmenter` is not owned and must outlive the Trainer.
  Trainer(Segmenter* segmenter, const TrainerOptions& options);

  // Supervised examples held out of training, to judge the weights by (evaluated every
  // validate_every steps; see the top of this file). Empty: the last (or averaged) weights.
  void SetHeldOut(std::vector<TrainingExample> held_out) { held_out_ = std::move(held_out); }

  // Trains until max_steps more steps or max_seconds have passed, whichever comes first.
  // `progress` (may be empty) is called every log_every steps and after the last one.
  // Errors: kInvalidArgument for empty data, batch_size < 1, no budget or a bad example;
  // kInternal for LibTorch failures. Returns the last progress report.
  Result<TrainProgress> Run(const std::vector<TrainingExample>& data,
                            const ProgressCallback& progress);

  // The budget of the next Run calls (the service trains in short runs between snapshots).
  void SetBudget(int64_t max_steps, double max_seconds) {
    options_.max_steps = max_steps;
    options_.max_seconds = max_seconds;
  }

  int64_t steps_done() const { return steps_done_; }

  // The weights to keep: with held-out examples, the latest within tolerance of the lowest
  // held-out loss (the trained or averaged ones before the first evaluation); else the average
  // when one is kept, else the trained segmenter itself.
  const Segmenter& Kept() const;

 private:
  // Evaluates the held-out loss of the current (averaged) weights and keeps them when within
  // tolerance of the lowest.
  Status Validate(TrainProgress& report);
  // Copies the held-out figures into `report`.
  void Report(TrainProgress& report) const;
  Segmenter& Evaluated() { return average_ ? *average_ : *segmenter_; }

  Segmenter* segmenter_;  // not owned
  TrainerOptions options_;
  std::vector<TrainingExample> held_out_;
  std::optional<Segmenter> average_;  // with average_decay > 0, from the first Run
  std::optional<Segmenter> kept_;     // with held-out examples
  float lowest_loss_ = 0;
  float kept_loss_ = 0;
  int64_t kept_step_ = 0;
  float last_held_out_loss_ = 0;
  int64_t validated_step_ = -1;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::mt19937_64 rng_;
  int64_t steps_done_ = 0;
  int64_t skipped_steps_ = 0;
};

}  // namespace clickdiff::model
