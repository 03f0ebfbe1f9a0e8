// nodes/replay.h — the continuous trainer's view of the store: every stored image that has
// supervision (clicks, or a dense label not kept for evaluation) as a training example on the
// model's grid, with a revision that grows whenever its supervision does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/store.h"
#include "model/training_example.h"

namespace clickdiff {

struct ReplayExample {
  std::string image_key;  // keys::Image(dataset, image_id)
  uint64_t revision = 0;  // clicks + training labels stored for the image
  model::TrainingExample example;
};

struct Replay {
  std::vector<ReplayExample> examples;
  uint64_t clicks = 0;  // clicks behind the examples
  uint64_t labels = 0;  // dense training labels behind the examples
};

// Reads images, clicks and labels from `store`. Images stored at another grid resolution than
// `resolution` are skipped (a different model's images); a label marked for evaluation is never
// read. Errors: store failures; a stored record that does not parse (kDataLoss); a click or mask
// the model cannot use (kInvalidArgument naming the image).
Result<Replay> LoadReplay(const Store& store, int64_t resolution, int64_t num_classes);

}  // namespace clickdiff
