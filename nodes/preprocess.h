// nodes/preprocess.h — puts a decoded image on the model grid: intensity windowing by robust
// percentiles, aspect-preserving pad to a square, antialiased resize to R x R, values in [0,1]
// (model/preprocess.h). Other events pass through untouched.
#pragma once

#include "nodes/messages.h"

namespace clickdiff {

// Stateless; safe under tbb::flow::unlimited. Never throws: a failure becomes a Rejected event.
class Preprocess {
 public:
  explicit Preprocess(int64_t resolution);
  Decoded operator()(Decoded decoded) const;

 private:
  int64_t resolution_;
};

// The grid a preprocessed image was stored with (StoredImage.grid, R x R), as a [1,R,R] float
// tensor of its own. The caller has checked grid_size() == R * R.
torch::Tensor StoredGrid(const v1::StoredImage& stored, int64_t resolution);

}  // namespace clickdiff
