// nodes/replay.h — the continuous trainer's view of the store: every stored image that has
// supervision (clicks, or a dense label not kept for evaluation) as a training example on the
// model's grid, with a revision that grows whenever its supervision does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/store.h"
#include "model/training_example.h"
#include "schemas/events.pb.h"

namespace clickdiff {

struct ReplayExample {
  std::string image_key;  // keys::Image(dataset, image_id)
  uint64_t revision = 0;  // clicks + training labels stored for the image
  model::TrainingExample example;
};

// Who a pseudo-label is for: the student (drawn by the teacher: the moving average, or the twin),
// or the co-trained twin (drawn by the student). Each has its own record per image.
enum class Learner { kStudent, kTwin };

// The pseudo-labels family's key of an image's label for `learner`.
std::string PseudoLabelKey(const std::string& image_key, Learner learner);

// A stored pseudo-label as a (non-dense) example whose `known` pixels are the confident ones, and
// the model version whose round drew it.
struct StoredPseudo {
  model::TrainingExample example;
  uint64_t version = 0;
};

// A stored image without supervision at the model grid: what the teacher pseudo-labels.
struct UnsupervisedImage {
  std::string image_key;
  torch::Tensor grid;  // [1,R,R] float
  // Its stored pseudo-labels; none when it has not been labelled (for that learner) at this grid.
  std::optional<StoredPseudo> for_student;
  std::optional<StoredPseudo> for_twin;

  const std::optional<StoredPseudo>& For(Learner learner) const {
    return learner == Learner::kStudent ? for_student : for_twin;
  }
};

struct Replay {
  std::vector<ReplayExample> examples;
  std::vector<UnsupervisedImage> unsupervised;
  uint64_t clicks = 0;  // clicks behind the examples
  uint64_t labels = 0;  // dense training labels behind the examples
};

// Reads images, clicks, labels and the student's pseudo-labels (and the twin's with
// `twin_labels`) from `store`. Images stored at another grid resolution than `resolution` are
// skipped (a different model's images); a label marked for evaluation is never read; a
// pseudo-label that does not parse is skipped with a warning (the next round draws it again).
// Errors: store failures; a stored image, click or label that does not parse (kDataLoss); a click
// or mask the model cannot use (kInvalidArgument naming the image).
Result<Replay> LoadReplay(const Store& store, int64_t resolution, int64_t num_classes,
                          bool twin_labels = false);

// The pseudo-label record of a teacher's vote: `samples` [N,R,R] class ids; a pixel is confident
// when its majority class has at least `confidence` of the votes.
v1::PseudoLabel MakePseudoLabel(const torch::Tensor& samples, int64_t num_classes,
                                double confidence, uint64_t teacher_version,
                                v1::PseudoLabel::Labeller labeller);

}  // namespace clickdiff
