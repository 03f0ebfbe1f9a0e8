// nodes/preprocess.h — puts a decoded image on the model grid: intensity windowing by robust
// percentiles, aspect-preserving pad to a square, antialiased resize to R x R, values in [0,1]
// (model/preprocess.h). A colour image keeps its 3 channels, unless the served model takes gray:
// then it is made gray before it is windowed (model::ImageToModelGrid), for full contrast. Other
// events pass through untouched.
#pragma once

#include "learning/model_slot.h"
#include "nodes/messages.h"

namespace clickdiff {

// Stateless; safe under tbb::flow::unlimited. Never throws: a failure becomes a Rejected event.
class Preprocess {
 public:
  // `models` (not owned, may be null: images keep their channels) must outlive the node.
  explicit Preprocess(int64_t resolution, const ModelSlot* models = nullptr);
  Decoded operator()(Decoded decoded) const;

 private:
  int64_t resolution_;
  const ModelSlot* models_;
};

}  // namespace clickdiff
