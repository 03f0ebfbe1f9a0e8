// model/click_guidance.h — clicks as network inputs: an image's clicks drawn as extra input
// channels, so a click changes its mask at once instead of only after training on it.
//
// Channel c of the guidance holds the clicks that say "class c here": positive clicks of class
// c >= 1, and in channel 0 the negative clicks (background). Each click is a Gaussian bump of
// peak 1 and standard deviation ClickGuidanceSigma(resolution); overlapping bumps are capped at 1.
// The image encoder takes the guidance after the image's own channels (UNetOptions::
// guidance_channels), so it is paid once per image like the image.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/preprocess.h"
#include "model/training_example.h"

namespace clickdiff::model {

// The bump's standard deviation in grid cells: resolution / 32, at least 1 (2 at 64x64).
double ClickGuidanceSigma(int64_t resolution);

// The guidance [B,K,R,R] float of the clicks at the `shown` pixels [B,R,R] bool, whose classes
// `labels` [B,R,R] int64 gives (0: a negative click). Same device as `labels`.
torch::Tensor ClickGuidance(const torch::Tensor& labels, const torch::Tensor& shown,
                            int64_t num_classes);

// The same for lists of clicks on an R x R grid, one list per image: [B,K,R,R] on `device`.
// Clicks must lie on the grid and name a class in [1, K) (positive) — as MakeClickExample checks.
torch::Tensor ClickGuidance(const std::vector<std::vector<Click>>& clicks, int64_t num_classes,
                            int64_t resolution, torch::Device device);

// Clicks in an image's own pixels placed on its model grid (GridMapping::ToGrid). Precondition:
// every click lies inside the image.
std::vector<Click> ClicksToGrid(const std::vector<Click>& clicks, const GridMapping& mapping);

// Sets every sample [N,R,R] at each click of `clicks` to what the click says (its class, or 0 for
// a negative click): a mask drawn with clicks holds every one of them. In place; a mask [H,W] is
// one sample (ImposeClicks(mask.unsqueeze(0), ...) writes through the view).
void ImposeClicks(torch::Tensor samples, const std::vector<Click>& clicks);

}  // namespace clickdiff::model
