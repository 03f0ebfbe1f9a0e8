// model/aggregator.h — turns N stochastic class-id samples of one image into a mask and an
// uncertainty map (the Aggregator stage of DESIGN.md's data flow).
//
// Pipeline: samples [N,H,W] (or a batch [B,N,H,W]) -> per-class vote fractions f [K,H,W]
// (f_c = share of samples voting c; sum_c f_c = 1) -> optional bilinear resize to the image's own
// size -> decision rule -> mask [H,W] int64 + uncertainty [H,W] float in [0,1].
//
// Decision rules (AggregationRule):
//  - kMajority: plain per-pixel vote, argmax_c f_c (paper 000). Ties go to the LOWEST class id
//    (so background wins a tie). With K = 2 this is the 50% majority vote.
//  - kThreshold: a foreground class c >= 1 is a candidate where f_c >= threshold_c (one threshold,
//    or one per class); among candidates the highest f_c wins (ties: lowest id); pixels with no
//    candidate are background (0). The threshold is meant to be calibrated on validation data.
//  - kDensity: each D3PM sample is a sparse point cloud inside the object (paper 000); the vote
//    maps are densified first. For each foreground class, s_c = Gaussian(f_c, sigma) (separable
//    conv2d, zero padding, kernel radius ceil(3 sigma), sigma in pixels of the SAMPLE resolution:
//    smoothing happens before any resize). Candidate where s_c >= relative_threshold * max(s_c)
//    (peak per image and class) or, with absolute_threshold > 0, where s_c >= absolute_threshold.
//    A class with no votes at all has no candidates. Overlaps: highest s_c wins (ties: lowest id);
//    no candidate -> background.
//  - kOtsu: needs no calibration. The vote maps are smoothed as for kDensity; then, per image and
//    class, Otsu's method picks the threshold that best splits the smoothed map's values into two
//    groups (the most between-group variance over a 256-bin histogram from 0 to the map's peak),
//    so the cut adapts to how dense this model's clouds are on this image. Candidate where
//    s_c >= that threshold and s_c >= otsu_floor (a class whose peak is below the floor, e.g. an
//    absent structure drawn by a handful of stray votes, stays empty). Overlaps as for kDensity.
// Uncertainty (UncertaintyKind), always from the raw (unsmoothed) vote fractions:
//  - kEntropy (default): normalized entropy H(f) / log(K) = -sum_c f_c log f_c / log K; 0 when all
//    samples agree, 1 when votes are spread evenly over the K classes.
//  - kOneMinusMax: (1 - max_c f_c) / (1 - 1/K); also 0 for agreement and 1 for an even spread.
//
// Thread-safety: an Aggregator is immutable after Create(); its const methods may be called from
// several threads at once. Tensors may live on any device; results stay on the input's device.
// Errors (bad shapes, dtypes, ids outside [0, K), LibTorch exceptions) come back as Status.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "model/choices.h"
#include "model/preprocess.h"
#include "model/training_example.h"

namespace clickdiff::model {

enum class UncertaintyKind { kEntropy, kOneMinusMax };

struct AggregatorOptions {
  int64_t num_classes = 2;  // K, background included
  AggregationRule rule = AggregationRule::kMajority;
  UncertaintyKind uncertainty = UncertaintyKind::kEntropy;

  // kThreshold: minimum vote fraction for a foreground class, in (0, 1]. If class_thresholds is
  // non-empty it must have K entries (entry 0 unused) and overrides `threshold` per class.
  double threshold = 0.5;
  std::vector<double> class_thresholds;

  // kDensity (see file comment). absolute_threshold > 0 replaces the relative rule.
  double density_sigma = 4.0;
  double density_relative_threshold = 0.05;
  double density_absolute_threshold = 0.0;

  // kOtsu: the smallest smoothed vote density that can be foreground, in [0, 1).
  double otsu_floor = 0.05;

  // AggregateOnImage: a click the drawn mask gets wrong corrects the pixels within this many times
  // its geodesic distance to the mask's nearest pixel of its class (model::ClickCorrections), in
  // [0, 8]; 0: clicks correct only their own pixel.
  double click_reach = 2.0;

  // AggregateOnImage with the image at its own size: the mask's boundaries move onto the image's
  // edges within this many grid cells (model::SnapToEdges), in [0, 4]; 0: the mask as decided.
  double edge_band = 1.5;
};

// The aggregation of one image (or a batch: every tensor gains a leading B dimension).
struct Aggregation {
  torch::Tensor mask;            // [H,W] int64 class ids
  torch::Tensor uncertainty;     // [H,W] float32 in [0,1]
  torch::Tensor vote_fractions;  // [K,H,W] float32, at the output size (resized when asked)
};

class Aggregator {
 public:
  // Validates `options` (K >= 2, thresholds in (0,1], sigma > 0, ...). Errors: kInvalidArgument
  // naming the field and the allowed range.
  static Result<Aggregator> Create(const AggregatorOptions& options);

  const AggregatorOptions& options() const { return options_; }

  // Per-class vote fractions of integer samples (uint8/int32/int64) [N,H,W] -> [K,H,W], or
  // [B,N,H,W] -> [B,K,H,W], float32. Errors: wrong rank or dtype, N == 0, id outside [0, K).
  static Result<torch::Tensor> VoteFractions(const torch::Tensor& samples, int64_t num_classes);

  // Samples [N,H,W] or [B,N,H,W] -> mask and uncertainty at the sample resolution.
  Result<Aggregation> Aggregate(const torch::Tensor& samples) const;

  // Vote fractions [K,h,w] (or [B,K,h,w]) -> decision at the same size.
  Result<Aggregation> Decide(const torch::Tensor& fractions) const;

  // Vote fractions [K,h,w] (or [B,K,h,w]) -> decision at [height, width]: fractions are resized
  // bilinearly (align_corners = false) to the image's own size before the decision, so masks come
  // back at native resolution. For kDensity the smoothing runs at [h,w] first (sigma keeps its
  // meaning), then the smoothed maps are resized and thresholded.
  Result<Aggregation> DecideAtSize(const torch::Tensor& fractions, int64_t height,
                                   int64_t width) const;

  // Samples [N,R,R] drawn on an image's model grid -> mask and uncertainty at the image's own size
  // (the grid's padding is cropped away first, see model/preprocess.h; a mapping cropped to a
  // region gives the region's decision in place, background with no uncertainty around it). With
  // the `image` itself [C,H,W] (its own size, any units) and edge_band > 0, the mask's boundaries
  // move onto its edges (model::SnapToEdges, band edge_band cells, blur half a cell, in pixels of
  // the image). With the image's grid `grid_image` [C,R,R] (the network's input) and
  // click_reach > 0, each of the image's `clicks` (its own pixels) the mask drawn on the grid gets
  // wrong then corrects its region (model::ClickCorrections, on the grid, resized bilinearly to the
  // region's size), in click order. The mask then holds each click: its class there, 0 for a
  // negative click. The uncertainty stays the votes'. Errors: kInvalidArgument for samples not on
  // the mapping's grid, a click outside the image or an `image` not [C,H,W] of the image's own
  // size; those of VoteFractions.
  Result<Aggregation> AggregateOnImage(const torch::Tensor& samples, const GridMapping& mapping,
                                       const std::vector<Click>& clicks = {},
                                       const torch::Tensor& grid_image = {},
                                       const torch::Tensor& image = {}) const;

 private:
  explicit Aggregator(AggregatorOptions options) : options_(std::move(options)) {}

  // The click corrections of AggregateOnImage, written into `mask` (the image's own size), from
  // the vote `fractions` [K,R,R] on the grid.
  Status Correct(const torch::Tensor& fractions, const GridMapping& mapping,
                 const std::vector<Click>& clicks, const torch::Tensor& grid_image,
                 torch::Tensor& mask) const;

  AggregatorOptions options_;
};

}  // namespace clickdiff::model
