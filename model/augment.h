// model/augment.h — random augmentation of training batches, so a model learns what an object
// looks like rather than the exact pixels around the clicks it was shown.
//
// Geometry (flips, quarter turns) moves image, target and known map together and is lossless on a
// square grid, so a single clicked pixel is never dropped or smeared. Intensity changes touch the
// image alone: a random gamma, contrast and brightness per example (strength `intensity`: gamma
// exp(U(-s, s)), contrast 1 + U(-s, s) about the image's mean, brightness U(-s/2, s/2)), then
// Gaussian pixel noise with a standard deviation drawn per example from U(0, noise); the result is
// clamped to [0, 1]. Every draw comes from the generator given, so a seeded run repeats.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

namespace clickdiff::model {

struct AugmentOptions {
  bool flips = true;       // horizontal flips, each example with probability 1/2
  bool rotations = false;  // quarter turns (0, 90, 180 or 270 degrees), uniformly
  double intensity = 0.0;  // strength of the gamma/contrast/brightness change, in [0, 1]
  double noise = 0.0;      // largest standard deviation of added pixel noise, in [0, 1]
};

// One training batch, on one device: image [B,C,R,R] float in [0,1], target [B,R,R] int64, known
// [B,R,R] bool. Square grids only when rotations are on.
struct AugmentBatch {
  torch::Tensor image;
  torch::Tensor target;
  torch::Tensor known;
};

// Applies `options` to `batch` in place (new tensors; the inputs are not written to).
void Augment(const AugmentOptions& options, at::Generator& gen, AugmentBatch& batch);

}  // namespace clickdiff::model
