// model/click_guidance.h — clicks as network inputs: an image's clicks drawn as extra input
// channels, so a click changes its mask at once instead of only after training on it.
//
// Channel c of the guidance holds the clicks that say "class c here": positive clicks of class
// c >= 1, and in channel 0 the negative clicks (background). Each click is a bump of peak 1;
// overlapping bumps are capped at 1. Two kinds (model/choices.h ClickGuidanceKind):
//   * gaussian: exp(-d^2 / 2 sigma^2) of the Euclidean distance d, sigma ClickGuidanceSigma(R);
//   * geodesic: the same of the geodesic distance over the image (each step between neighbouring
//     cells costs its length times 1 + |colour difference| / the image's mean difference between
//     neighbours (at least 1/255), on the image blurred by a Gaussian of sigma one cell), sigma
//     GeodesicGuidanceSigma(R): wider, so a click's bump fills the homogeneous region around it and
//     falls off at edges, as the geodesic click maps of DeepIGeoS (Wang et al., TPAMI 2019).
// The image encoder takes the guidance after the image's own channels (UNetOptions::
// guidance_channels), so it is paid once per image like the image.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/choices.h"
#include "model/preprocess.h"
#include "model/training_example.h"

namespace clickdiff::model {

// The gaussian bump's standard deviation in grid cells: resolution / 32, at least 1 (2 at 64x64).
double ClickGuidanceSigma(int64_t resolution);
// The geodesic bump's, in geodesic cells: resolution / 8, at least 1 (8 at 64x64).
double GeodesicGuidanceSigma(int64_t resolution);

// The geodesic distance [H,W] float from the `seeds` pixels [H,W] bool of `image` [C,H,W] float
// (CPU), with the step cost above on `image` as given (ClickDistances blurs it first); +inf
// where no seed is. Two raster-scan passes each way over 8-neighbours (on a flat image the
// chamfer distance of unit and diagonal steps: exact along rows, columns and diagonals, at most
// 8.2% above the Euclidean elsewhere).
torch::Tensor GeodesicDistance(const torch::Tensor& image, const torch::Tensor& seeds);

// The same from a start [H,W] float: each pixel's distance is the least over all pixels q of
// start(q) plus the geodesic distance from q (start +inf: not a seed; a seed may start below 0).
// Throws c10::Error when `start` is not [H,W] of the image.
torch::Tensor GeodesicDistanceFrom(const torch::Tensor& image, const torch::Tensor& start);

// The geodesic distance [K,H,W] float of each pixel of `image` [C,H,W] float to the nearest shown
// click of each class (`labels` [H,W] int64, `shown` [H,W] bool, as below), on the image blurred by
// one cell; +inf for a class without a shown click. On the CPU.
torch::Tensor ClickDistances(const torch::Tensor& image, const torch::Tensor& labels,
                             const torch::Tensor& shown, int64_t num_classes);

// The guidance [B,K,R,R] float of the clicks at the `shown` pixels [B,R,R] bool, whose classes
// `labels` [B,R,R] int64 gives (0: a negative click). `images` [B,C,R,R] float, the network's
// image input, is read by kGeodesic alone. Same device as `labels`.
torch::Tensor ClickGuidance(const torch::Tensor& labels, const torch::Tensor& shown,
                            int64_t num_classes,
                            ClickGuidanceKind kind = ClickGuidanceKind::kGaussian,
                            const torch::Tensor& images = {});

// The same for lists of clicks on an R x R grid, one list per image: [B,K,R,R] on `device`.
// Clicks must lie on the grid and name a class in [1, K) (positive) — as MakeClickExample checks.
torch::Tensor ClickGuidance(const std::vector<std::vector<Click>>& clicks, int64_t num_classes,
                            int64_t resolution, torch::Device device,
                            ClickGuidanceKind kind = ClickGuidanceKind::kGaussian,
                            const torch::Tensor& images = {});

// A click the network's mask gets wrong, and the pixels it corrects (ClickCorrections).
struct ClickCorrection {
  int64_t class_id = 0;  // what the click says: its class, 0 for a negative click
  // [H,W] float: each pixel's geodesic distance from the click over the click's reach, at most 2;
  // the click corrects the pixels at 1 or less.
  torch::Tensor reach;
};

// The corrections the `clicks` (grid cells) make to `mask` [H,W] int64, drawn by the network for
// `image` [C,H,W] float before any click was imposed on it (read only for clicks whose gap is
// unknown; undefined when there are none), in click order. The first positive
// click of a class says where its structure is and corrects nothing (paper 000's one click per
// structure is left as drawn), nor does a click the mask already holds: beyond the click's own
// region (ClickRegionRadius, which a network trained on clicks draws around every click it is
// shown), most of the ring out to twice that radius takes the click's class. A further click, or a
// negative one, the mask does not hold sits in a region the mask gets wrong (an annotator clicks
// in the middle of an error): it claims the pixels within `reach` times its geodesic distance to
// the nearest pixel beyond its own region that the mask gives the click's class (that distance
// capped at GeodesicGuidanceSigma(R)), on the image blurred as ClickDistances does, so the region
// fills the gap to the mask and as much beyond the click, and stops at the image's edges. A click
// whose class the mask has nowhere else corrects nothing. On the CPU.
// A click whose gap is known (Click::gap >= 0, measured by CorrectionGap when it was made, on the
// mask the annotator then saw) skips all of this: it corrects the pixels within `reach` times its
// gap (0: nothing), whatever the mask drawn now, so what a click fixed stays fixed while the
// network learns only the click's own neighbourhood.
std::vector<ClickCorrection> ClickCorrections(const torch::Tensor& image, const torch::Tensor& mask,
                                              const std::vector<Click>& clicks, double reach);

// The gap of `click` (grid cells) made on `mask` [H,W] int64, the mask served for `image` [C,H,W]
// when it came: 0 when the mask holds the click or has its class nowhere, else the click's
// geodesic distance to the mask's nearest pixel of its class, capped at GeodesicGuidanceSigma(R).
// The caller passes 0 for a class's first positive click. On the CPU.
double CorrectionGap(const torch::Tensor& image, const torch::Tensor& mask, const Click& click);

// Clicks in an image's own pixels placed on its model grid (GridMapping::ToGrid). Precondition:
// every click lies inside the image.
std::vector<Click> ClicksToGrid(const std::vector<Click>& clicks, const GridMapping& mapping);

// Sets every sample [N,R,R] at each click of `clicks` to what the click says (its class, or 0 for
// a negative click): a mask drawn with clicks holds every one of them. In place; a mask [H,W] is
// one sample (ImposeClicks(mask.unsqueeze(0), ...) writes through the view).
void ImposeClicks(torch::Tensor samples, const std::vector<Click>& clicks);

}  // namespace clickdiff::model
