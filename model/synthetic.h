// model/synthetic.h — seeded synthetic "organ" images for tests, demos and tuning.
//
// Each image has one smooth blob per foreground class (1..K-1; a blob may partly cover an earlier
// one) on a textured, noisy background. Intensities overlap on purpose: the background is a random
// low-frequency field plus strong pixel noise, and each organ's mean is drawn from the background's
// own range, so no intensity threshold separates them. Organs differ from the background by
// texture (smooth interior: low noise; class 2 and up add class-specific stripes), by a thin rim of
// contrasting intensity (an edge) and by shape (a smooth star-shaped blob). One positive click per
// object is drawn uniformly among the pixels the object finally covers.
// With `color`, the same image is tinted: each class (background included) gets its own hue, added
// as a chroma of zero Rec. 709 luminance, so the image converted to gray is the gray image (up to
// clipping at 0 and 1) and the colour is a cue only a model that keeps colour can use.
// Pure function of (options, seed); thread-safe.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/training_example.h"

namespace clickdiff::model {

struct SyntheticOptions {
  int64_t height = 64;
  int64_t width = 64;
  int64_t num_classes = 2;            // background + num_classes - 1 organs per image
  double min_radius_fraction = 0.14;  // blob radius range, as a fraction of min(height, width)
  double max_radius_fraction = 0.24;
  double background_noise = 0.12;  // pixel noise of the background texture
  double organ_noise = 0.03;       // pixel noise inside organs
  bool color = false;              // RGB images: a hue per class (see the file comment)
  double saturation = 0.12;        // colour: length of the chroma added to each pixel
};

struct SyntheticSample {
  torch::Tensor image;        // [C,H,W] float in [0,1]; C = 3 with `color`, else 1
  torch::Tensor mask;         // [H,W] int64 class ids
  std::vector<Click> clicks;  // one positive click per visible object
};

// Generates `count` samples; sample i depends only on (options, seed, i).
std::vector<SyntheticSample> GenerateSynthetic(const SyntheticOptions& options, int64_t count,
                                               uint64_t seed);

}  // namespace clickdiff::model
