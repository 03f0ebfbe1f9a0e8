// learning/version_gate.h — the continuous trainer's held-out judgment of its versions: a new
// version is published only when it does not do worse than the served one on clicks neither has
// trained on, so a longer session cannot end on weights that learnt the clicks by heart (the
// collapse `clickdiff train` avoids the same way, model/trainer.h).
//
// Held out: a share (`trainer.held_out`) of the supervised images, picked by a hash of their key
// and the trainer's seed (so an image keeps its part as supervision grows), at most the
// `trainer.held_out_images` newest of them by the order the trainer first saw them. Older ones
// join training and are never held out again, so no image's clicks wait for ever and no held-out
// image is one a version trained on (within one run of the service: the order restarts with it).
//
// Judgment: the candidate's held-out loss (model::Segmenter::HeldOutLoss, the same noise draws for
// every model) must be at most (1 + tolerance) x the lowest loss a published version had on the
// same held-out set, which starts as the served version's when the set changes (a new image held
// out, a new click on one, one released). With fewer than 2 images held out there is no judgment:
// every candidate is published. When every supervised image would be held out, they all train
// (for good) instead, so the trainer never idles for want of training data.
//
// Not thread-safe: the continuous trainer's thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "learning/replay.h"
#include "model/segmenter.h"

namespace clickdiff {

struct VersionGateOptions {
  double share = 0.1;       // trainer.held_out; 0: nothing held out, no gate
  int64_t max_images = 8;   // trainer.held_out_images; 0: nothing held out, no gate
  double tolerance = 0.25;  // trainer.held_out_tolerance
  int64_t batch_size = 8;   // of the held-out loss
  int64_t draws = 4;        // noise draws of the held-out loss
  uint64_t seed = 1;        // trainer.seed: the images picked and the draws
};

struct GateVerdict {
  bool publish = true;
  size_t images = 0;  // held out; under 2: not judged
  float loss = 0;     // the candidate's held-out loss (0 when not judged)
  float lowest = 0;   // what it was judged against (0 when not judged)
};

class VersionGate {
 public:
  explicit VersionGate(VersionGateOptions options);

  // Whether `image_key` is in the share that may be held out (the hash alone).
  bool Eligible(const std::string& image_key) const;

  // Splits `examples` (a replay's, in any order): returns the indices to train on and keeps the
  // held-out ones for Judge.
  std::vector<size_t> Split(const std::vector<ReplayExample>& examples);

  // Images held out by the last Split.
  size_t held_out() const { return held_out_.size(); }

  // Judges `candidate` against `served` (evaluated only when the held-out set changed) on the
  // held-out examples of the last Split. Errors: those of HeldOutLoss.
  Result<GateVerdict> Judge(model::Segmenter& candidate, model::Segmenter& served);

  // `verdict`'s candidate was published: its loss can lower the reference.
  void Published(const GateVerdict& verdict);

 private:
  using SetId = std::vector<std::pair<std::string, uint64_t>>;  // keys and revisions

  VersionGateOptions options_;
  std::map<std::string, uint64_t> first_seen_;  // image key -> order of first sight
  uint64_t seen_ = 0;
  std::set<std::string> released_;  // held out once, now trained on
  std::vector<ReplayExample> held_out_;
  SetId judged_;  // the held-out set `lowest_` belongs to
  std::optional<float> lowest_;
};

}  // namespace clickdiff
