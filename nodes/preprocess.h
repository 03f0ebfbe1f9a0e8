// nodes/preprocess.h — puts a decoded image on the model grid: intensity windowing by robust
// percentiles, aspect-preserving pad to a square, antialiased resize to R x R, values in [0,1]
// (model/preprocess.h); colour images keep their 3 channels (the model takes what it was built
// for when it reads the grid). Other events pass through untouched.
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

}  // namespace clickdiff
