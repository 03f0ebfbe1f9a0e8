// model/training_example.h — one unit of supervision at the model's resolution, and the click map
// that paper 000 trains on.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "base/labels.h"
#include "base/status.h"

namespace clickdiff::model {

// A click at pixel (x = column, y = row). A positive click says the pixel belongs to `class_id`
// (>= 1); a negative click (positive = false) says it is certainly background.
struct Click {
  int64_t x = 0;
  int64_t y = 0;
  int64_t class_id = 1;
  bool positive = true;
  // Grid cells: how far the click was from the mask it corrected when it was made
  // (ClickEvent.correction_gap; 0: it corrected nothing), or < 0 when unknown
  // (model/click_guidance.h ClickCorrections).
  double gap = -1;
};

struct TrainingExample {
  torch::Tensor image;   // [C,R,R] float in [0,1] (C = image channels, usually 1)
  torch::Tensor target;  // [R,R] int64 class ids: the click map, or the dense mask when `dense`
  torch::Tensor known;   // [R,R] bool, optional: pixels whose label is certain (positive and
                         // negative clicks, a scribble's pixels). Undefined means "the
                         // non-background pixels of target".
  bool dense = false;    // target is a full mask (every pixel known)
  // target is a partial label map (scribbles): `known` pixels carry their class, the others are
  // unknown (target 0: the focal loss weighs them as a click map's unclicked pixels, the partial
  // losses not at all; model/losses.h); clicks for a click_input model are simulated on it as on
  // a dense mask (model/segmenter.h).
  bool partial = false;
  // The known pixels are clicks a click_input model may be shown (model/segmenter.h); false for
  // dense masks, partial label maps and pseudo-labels.
  bool clicks_as_input = false;
  double weight = 1;  // scales the example's loss (teacher-student: the pseudo-label weight)
};

// Builds the click-map example of paper 000: target is background everywhere except at positive
// clicks; `known` marks positive and negative clicks. Errors: kInvalidArgument when the image is
// not [C,H,W] float, or a click lies outside it, names class < 1 or >= num_classes.
Result<TrainingExample> MakeClickExample(const torch::Tensor& image,
                                         const std::vector<Click>& clicks, int64_t num_classes);

// Builds a dense (full supervision) example. Errors: kInvalidArgument when shapes disagree or a
// class id is outside [0, num_classes).
Result<TrainingExample> MakeDenseExample(const torch::Tensor& image, const torch::Tensor& mask,
                                         int64_t num_classes);

// The geodesic radius (grid cells, model/click_guidance.h) of a click's region in LabelUnclicked:
// half the geodesic guidance's sigma (4 cells at 64x64), 0.5 at least.
double ClickRegionRadius(int64_t resolution);

// A click map whose unclicked pixels take their class from `mask` ([H,W], e.g. the mask the service
// served for the image) instead of background, except the click's region: the unclicked pixels
// within ClickRegionRadius (geodesic, so it stops at the image's edges) of a click, and nearer to
// it than to any click of another class, take that click's class. The clicks stay the only known
// pixels (weighed as clicks, model/losses.h); the rest weigh as unclicked pixels do. Errors:
// kInvalidArgument when `clicks` is not a click map, or `mask` does not match the image or holds
// a class id outside [0, num_classes).
Result<TrainingExample> LabelUnclicked(const TrainingExample& clicks, const torch::Tensor& mask,
                                       int64_t num_classes);

// Builds a partial-label example from a label map ([H,W] like the image) whose pixels are class
// ids or kUnknownClass (base/labels.h), with `clicks` (positive: their class, negative: background)
// marked known on top. Errors: kInvalidArgument when shapes disagree, a value is neither a class id
// in [0, num_classes) nor kUnknownClass, no pixel is labelled, or a click is invalid (as in
// MakeClickExample).
Result<TrainingExample> MakePartialExample(const torch::Tensor& image, const torch::Tensor& labels,
                                           const std::vector<Click>& clicks, int64_t num_classes);

// The supervision an image has: its label map when `mask` is defined (full supervision, or with
// `partial` a partial label with the clicks on top: MakePartialExample; whether a map is partial is
// its source's to say, base/labels.h HoldsUnknown, since every grid cell of a dense scribble may
// be labelled), else the click map of `clicks`; nothing when it has neither. Errors: those of the
// builders above.
Result<std::optional<TrainingExample>> MakeSupervisedExample(const torch::Tensor& image,
                                                             const std::vector<Click>& clicks,
                                                             const torch::Tensor& mask,
                                                             int64_t num_classes,
                                                             bool partial = false);

}  // namespace clickdiff::model
