// learning/teacher.h — teacher-student (paper 004) beside the continuous trainer's student.
//
// The moving average (EMA) of the student is what versions serve: its weights are smoother than
// the student's last step. After each version a pseudo-labelling round labels unsupervised images
// (those labelled longest ago first) by the vote of `samples` samples, keeping the pixels whose
// majority reaches `confidence`; the labels go to the store (kPseudoLabels) and join the replay
// with a weight ramped up over `ramp_steps`. Mode kEma: the average labels for the student. Mode
// kTwin (cross pseudo-supervision): a co-trained twin trains on the same supervision in step with
// the student; the twin labels for the student and the student for the twin. The twin is
// initialised on its own when the student starts from scratch, else as a copy of the start with
// training noise of its own; a twin stored with the start version is resumed instead.
//
// With teacher.clicked_masks, clicked images learn from the masks the service served for them
// (drawn by the served average in both modes, not the twin) in a share of their training that
// follows the same ramp (ClickedMaskShare; learning/replay.h, Taught).
//
// Not thread-safe: the continuous trainer's thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "io/store.h"
#include "learning/replay.h"
#include "learning/version_store.h"
#include "model/segmenter.h"
#include "model/trainer.h"

namespace clickdiff {

class Teacher {
 public:
  // `store` (pseudo-labels are written there) is not owned and must outlive the Teacher.
  // `memory_budget_mb` bounds the memory of one labelling draw (sampler.memory_budget_mb).
  Teacher(const TeacherConfig& config, int64_t memory_budget_mb, Store* store);

  // Builds the average of `student` and, in mode kTwin, the twin (the one `versions` holds for
  // `version` when there is one) with a trainer seeded apart from `trainer`'s. Does nothing when
  // disabled or already started. Errors: a copy or a fresh twin could not be built.
  Status Start(const model::Segmenter& student, uint64_t version, bool student_untrained,
               const VersionStore& versions, const model::TrainerOptions& trainer);

  bool enabled() const { return config_.enabled; }
  bool has_twin() const { return twin_.has_value(); }
  // The twin (mode kTwin, after Start), or null.
  const model::Segmenter* twin() const { return twin_ ? &*twin_ : nullptr; }

  // The average follows the student after `steps` more training steps (`total_steps` in all).
  void Follow(const model::Segmenter& student, int64_t total_steps, int64_t steps);
  // The average (when there is one) takes `weights` (a version refused by the gate is dropped:
  // learning/version_gate.h).
  void ResetAverage(const model::Segmenter& weights);
  // What a version serves: the average once started, else the student.
  const model::Segmenter& Served(const model::Segmenter& student) const;
  // The twin trains `steps` steps on `data` (its replay). No-op without a twin.
  Status TrainTwin(int64_t steps, const std::vector<model::TrainingExample>& data);

  // The share of a clicked image's training that uses the mask served for it as the label of its
  // unclicked pixels (ReplayExample::served, model::LabelUnclicked) after `total_steps`: the
  // ramped pseudo-label weight, at most 1; 0 when disabled or teacher.clicked_masks is off.
  double ClickedMaskShare(int64_t total_steps) const;

  // Adds to `data` the stored pseudo-labels of `replay` for `learner` (the freshest first, at most
  // as many as there are supervised examples, so thousands of unclicked images do not crowd the
  // clicks out of the batches), weighted for `total_steps`. Returns how many it added.
  uint64_t AddPseudoLabels(const Replay& replay, Learner learner, int64_t total_steps,
                           double focal_alpha, std::vector<model::TrainingExample>& data) const;

  // The pseudo-labelling round after version `version`: with the twin, each labels for the other;
  // else the average labels for the student. `touch` is called with every image key labelled
  // (after the write); `stopping` ends a round early. Errors: sampling or the store failed.
  Status Round(uint64_t version, const model::Segmenter& student, const Replay& replay,
               const std::function<bool()>& stopping,
               const std::function<void(const std::string&)>& touch);

 private:
  // The pseudo-label weight of paper 004 after `total_steps`: teacher.weight, ramped linearly
  // over teacher.ramp_steps.
  double RampedWeight(int64_t total_steps) const;
  Result<model::Segmenter> StartTwin(const model::Segmenter& student, uint64_t version,
                                     bool student_untrained, const VersionStore& versions) const;
  Status Label(uint64_t version, const model::Segmenter& labeller, Learner learner,
               const Replay& replay, const std::function<bool()>& stopping,
               const std::function<void(const std::string&)>& touch);

  TeacherConfig config_;
  int64_t memory_budget_mb_;
  Store* store_;
  std::optional<model::Segmenter> average_;
  // The twin and its trainer, which holds &*twin_ (and its optimizer the twin's parameters):
  // twin_ is set once and never reassigned, and is declared before twin_trainer_ so it outlives it.
  std::optional<model::Segmenter> twin_;
  std::unique_ptr<model::Trainer> twin_trainer_;
};

}  // namespace clickdiff
