// model/trainer.h — the offline training loop: random mini-batches from a fixed set of examples,
// Adam, a step and/or wall-clock budget, and a progress callback.
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
#include <random>
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
};

struct TrainProgress {
  int64_t step = 0;             // steps done so far (over all Run calls)
  float loss = 0;               // mean loss over the steps since the previous report
  double steps_per_second = 0;  // over this Run
  double elapsed_seconds = 0;   // of this Run
};

using ProgressCallback = std::function<void(const TrainProgress&)>;

class Trainer {
 public:
  // `segmenter` is not owned and must outlive the Trainer.
  Trainer(Segmenter* segmenter, const TrainerOptions& options);

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

 private:
  Segmenter* segmenter_;  // not owned
  TrainerOptions options_;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::mt19937_64 rng_;
  int64_t steps_done_ = 0;
};

}  // namespace clickdiff::model
