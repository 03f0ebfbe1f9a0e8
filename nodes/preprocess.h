// nodes/preprocess.h — puts a decoded image on the model grid: intensity windowing by robust
// percentiles, aspect-preserving pad to a square, antialiased resize to R x R, values in [0,1]
// (model/preprocess.h). A colour image keeps its 3 channels, unless the served model takes gray:
// then it is made gray before it is windowed (model::ImageToModelGrid), for full contrast. With
// crop_to_content (the served model's choice, or the config's when none is served) only the
// image's content goes on the grid (model::ContentRegion), and the stored image records the region.
// Other events pass through untouched.
#pragma once

#include "learning/model_slot.h"
#include "nodes/messages.h"

namespace clickdiff {

// Stateless; safe under tbb::flow::unlimited. Never throws: a failure becomes a Rejected event.
class Preprocess {
 public:
  // `models` (not owned, may be null: images keep their channels) must outlive the node.
  explicit Preprocess(int64_t resolution, const ModelSlot* models = nullptr,
                      bool crop_to_content = false);
  Decoded operator()(Decoded decoded) const;

 private:
  int64_t resolution_;
  const ModelSlot* models_;
  bool crop_to_content_;
};

}  // namespace clickdiff
