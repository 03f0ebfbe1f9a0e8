// model/metrics.h — segmentation scores: Dice, IoU, HD95 (pixels), precision and recall, per class
// and as class means, for one image and aggregated over a dataset.
//
// Inputs are int64 class-id tensors [H, W] (any device; they are copied to CPU). Classes are
// compared one-vs-rest: for class c, P = {pred == c}, T = {truth == c}, TP = |P ∩ T|, FP = |P \ T|,
// FN = |T \ P|.
//
// Conventions (fixed; the CLI's JSON scores follow them):
//  - Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN); both are 1 when P and T are empty.
//  - precision = TP / (TP + FP): 1 when P is empty and T is empty, 0 when P is empty and T is not.
//    recall = TP / (TP + FN): 1 when T is empty and P is empty, 0 when T is empty and P is not.
//  - HD95: boundary pixels of a set are its pixels with a 4-neighbour outside the set (pixels on
//    the image border count as boundary: outside the image is "outside"). d(a, B) is the Euclidean
//    distance (pixels) from a to the nearest boundary pixel of B. HD95 = max(p95{d(a, ∂T) : a in
//    ∂P}, p95{d(b, ∂P) : b in ∂T}), p95 with linear interpolation between order statistics (as
//    numpy.percentile) — the MedPy/MONAI definition, so numbers compare with the literature.
//    Both empty: 0. Exactly one empty: the image diagonal sqrt(H^2 + W^2) by default (a finite
//    worst case that penalises a missed or hallucinated structure and keeps JSON free of NaN), or
//    NaN with Hd95EmptyPolicy::kNaN (NaNs are then left out of the means and counted).
//  - Class means (per image and per dataset) are unweighted means over the evaluated classes:
//    classes 1..K-1 unless include_background.
//  - Dataset aggregation: per class, the mean over images of the per-image scores. By default an
//    image where the class is absent from BOTH truth and prediction is skipped for that class
//    (its perfect-by-definition score would inflate the mean); an image where the class is absent
//    from the truth but predicted counts (Dice 0), so false positives are not hidden. See
//    AbsentClassPolicy for the alternatives. A class skipped in every image has mean NaN and
//    images == 0 (it is then also left out of the class means).
//
// Thread-safety: the free functions are pure; MetricsAccumulator is not synchronised (one owner).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace clickdiff::model {

enum class Hd95EmptyPolicy {
  kImageDiagonal,  // exactly one of P, T empty -> sqrt(H^2 + W^2)
  kNaN,            // exactly one empty -> NaN, left out of means
};

enum class AbsentClassPolicy {
  kSkipIfBothEmpty,   // default: skip image for class c when neither truth nor prediction has c
  kSkipIfTruthEmpty,  // skip whenever the truth lacks c (false positives there are not counted)
  kInclude,           // never skip (both empty counts as a perfect score)
};

struct MetricsOptions {
  int64_t num_classes = 2;          // ids in the tensors must lie in [0, num_classes)
  bool include_background = false;  // evaluate class 0 too
  Hd95EmptyPolicy hd95_empty = Hd95EmptyPolicy::kImageDiagonal;
  AbsentClassPolicy absent_class = AbsentClassPolicy::kSkipIfBothEmpty;
  // false: HD95 is not computed (NaN, left out of means) — for sweeps that rank by Dice only.
  bool compute_hd95 = true;
};

// Scores of one class on one image (or, in DatasetScores, means over images).
struct ClassScores {
  int64_t class_id = 0;
  double dice = 0;
  double iou = 0;
  double hd95 = 0;  // pixels
  double precision = 0;
  double recall = 0;
  int64_t truth_pixels = 0;  // per image: |T|; in DatasetScores: summed over counted images
  int64_t pred_pixels = 0;   // per image: |P|; in DatasetScores: summed over counted images
  // Per image: 1 when this class counts, 0 when options.absent_class skips it on this image.
  // In DatasetScores: the number of images that entered the means.
  int64_t images = 1;
  int64_t hd95_undefined = 0;  // images whose HD95 was NaN and left out (kNaN policy only)
};

// Unweighted means over the evaluated classes.
struct MeanScores {
  double dice = 0;
  double iou = 0;
  double hd95 = 0;
  double precision = 0;
  double recall = 0;
};

// Scores of one image. `per_class` lists the evaluated classes in id order.
struct ImageScores {
  std::vector<ClassScores> per_class;
  MeanScores mean;  // over classes not skipped by options.absent_class
};

// Dataset scores: plain fields, meant to be written to JSON as is by the CLI, e.g.
//   {"num_images": 96, "per_class": [{"class": 1, "dice": .., "iou": .., "hd95": .., ...}],
//    "mean": {"dice": .., ...}}.
struct DatasetScores {
  int64_t num_images = 0;
  std::vector<ClassScores> per_class;  // per-class means over the counted images
  MeanScores mean;                     // mean of the per-class means (classes with images > 0)
};

// Scores one prediction against its truth. Both must be integer tensors [H, W] of the same shape
// with ids in [0, num_classes). Errors: kInvalidArgument naming the shape, dtype or offending id.
Result<ImageScores> ScoreImage(const torch::Tensor& pred, const torch::Tensor& truth,
                               const MetricsOptions& options);

// HD95 (pixels) between two boolean/integer masks [H, W] (nonzero = inside), with the conventions
// above. Exposed for tests and for callers scoring binary masks. Precondition: same 2-D shape.
double Hd95(const torch::Tensor& pred_mask, const torch::Tensor& truth_mask,
            Hd95EmptyPolicy empty_policy = Hd95EmptyPolicy::kImageDiagonal);

// Accumulates ImageScores over a dataset. Not thread-safe: one owner adds and finishes.
class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(MetricsOptions options);

  // Scores one image and adds it. Errors as ScoreImage; a failed image is not added.
  Status Add(const torch::Tensor& pred, const torch::Tensor& truth);
  // Adds precomputed scores (must come from ScoreImage with the same options).
  void Add(const ImageScores& scores);

  // Means so far; can be called repeatedly.
  DatasetScores Finish() const;

 private:
  struct Sums {
    double dice = 0, iou = 0, hd95 = 0, precision = 0, recall = 0;
    int64_t images = 0, hd95_images = 0, hd95_undefined = 0, truth_pixels = 0, pred_pixels = 0;
  };
  MetricsOptions options_;
  int64_t num_images_ = 0;
  std::vector<Sums> sums_;  // indexed by class id
};

}  // namespace clickdiff::model
