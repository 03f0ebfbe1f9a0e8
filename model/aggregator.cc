#include "model/aggregator.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "model/blur.h"
#include "model/click_guidance.h"
#include "model/edge_snap.h"

namespace clickdiff::model {
namespace {

namespace F = torch::nn::functional;

std::string ShapeString(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

torch::Tensor Resize(const torch::Tensor& x, int64_t height, int64_t width) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

// Foreground decision among candidates: the class (1-based offset into `score`'s channel dim) with
// the highest score where `candidate` holds; background where no class is a candidate.
torch::Tensor PickForeground(const torch::Tensor& score, const torch::Tensor& candidate) {
  torch::Tensor masked = torch::where(candidate, score, torch::full_like(score, -1.0f));
  torch::Tensor best = masked.argmax(1);  // first maximum: lowest class id on ties
  torch::Tensor any = candidate.any(1);
  return torch::where(any, best + 1, torch::zeros_like(best));
}

// Otsu's threshold of every map of x [B,C,H,W] (values >= 0) -> [B,C,1,1]: over a histogram of
// `bins` bins from 0 to the map's peak, the bin edge with the most between-group variance.
torch::Tensor OtsuThresholds(const torch::Tensor& x, int64_t bins = 256) {
  const int64_t b = x.size(0), c = x.size(1);
  const torch::Tensor flat = x.reshape({b * c, -1});
  const torch::Tensor peak = flat.amax(1, /*keepdim=*/true).clamp_min(1e-12f);
  // Bin index of every value, then one histogram per map by scatter-add.
  const torch::Tensor index =
      (flat / peak * static_cast<float>(bins)).floor().clamp(0, bins - 1).to(torch::kLong);
  const torch::Tensor hist =
      torch::zeros({b * c, bins}, flat.options()).scatter_add_(1, index, torch::ones_like(flat));
  const torch::Tensor centres =
      (torch::arange(bins, flat.options()) + 0.5f) / static_cast<float>(bins);  // x / peak
  const torch::Tensor weight0 = hist.cumsum(1);                                 // below the cut
  const torch::Tensor mass0 = (hist * centres).cumsum(1);
  const torch::Tensor total = weight0.slice(1, bins - 1);
  const torch::Tensor total_mass = mass0.slice(1, bins - 1);
  const torch::Tensor weight1 = total - weight0;
  const torch::Tensor mean0 = mass0 / weight0.clamp_min(1e-12f);
  const torch::Tensor mean1 = (total_mass - mass0) / weight1.clamp_min(1e-12f);
  const torch::Tensor between = weight0 * weight1 * (mean0 - mean1).pow(2);
  const torch::Tensor cut = between.argmax(1, /*keepdim=*/true);  // last bin of the low group
  const torch::Tensor edge = (cut + 1).to(flat.scalar_type()) / static_cast<float>(bins);
  return (edge * peak).view({b, c, 1, 1});
}

torch::Tensor Uncertainty(const torch::Tensor& fractions, UncertaintyKind kind) {
  const int64_t k = fractions.size(1);
  if (kind == UncertaintyKind::kOneMinusMax) {
    return ((1.0f - fractions.amax(1)) / static_cast<float>(1.0 - 1.0 / k)).clamp(0.0f, 1.0f);
  }
  torch::Tensor p = fractions.clamp_min(0.0f);
  torch::Tensor entropy = -(p * torch::log(p.clamp_min(1e-12f))).sum(1);
  return (entropy / static_cast<float>(std::log(static_cast<double>(k)))).clamp(0.0f, 1.0f);
}

}  // namespace

Result<Aggregator> Aggregator::Create(const AggregatorOptions& options) {
  if (options.num_classes < 2) {
    return InvalidArgument("AggregatorOptions.num_classes must be >= 2, got " +
                           std::to_string(options.num_classes));
  }
  if (!(options.threshold > 0.0 && options.threshold <= 1.0)) {
    return InvalidArgument("AggregatorOptions.threshold must be in (0, 1], got " +
                           std::to_string(options.threshold));
  }
  if (!options.class_thresholds.empty()) {
    if (static_cast<int64_t>(options.class_thresholds.size()) != options.num_classes) {
      return InvalidArgument("AggregatorOptions.class_thresholds must have num_classes (" +
                             std::to_string(options.num_classes) + ") entries, got " +
                             std::to_string(options.class_thresholds.size()));
    }
    for (size_t c = 1; c < options.class_thresholds.size(); ++c) {
      const double t = options.class_thresholds[c];
      if (!(t > 0.0 && t <= 1.0)) {
        return InvalidArgument("AggregatorOptions.class_thresholds[" + std::to_string(c) +
                               "] must be in (0, 1], got " + std::to_string(t));
      }
    }
  }
  if (!(options.density_sigma > 0.0 && options.density_sigma <= 64.0)) {
    return InvalidArgument("AggregatorOptions.density_sigma must be in (0, 64] pixels, got " +
                           std::to_string(options.density_sigma));
  }
  if (!(options.density_relative_threshold > 0.0 && options.density_relative_threshold <= 1.0)) {
    return InvalidArgument("AggregatorOptions.density_relative_threshold must be in (0, 1], got " +
                           std::to_string(options.density_relative_threshold));
  }
  if (!(options.density_absolute_threshold >= 0.0 && options.density_absolute_threshold <= 1.0)) {
    return InvalidArgument("AggregatorOptions.density_absolute_threshold must be in [0, 1], got " +
                           std::to_string(options.density_absolute_threshold));
  }
  if (!(options.otsu_floor >= 0.0 && options.otsu_floor < 1.0)) {
    return InvalidArgument("AggregatorOptions.otsu_floor must be in [0, 1), got " +
                           std::to_string(options.otsu_floor));
  }
  if (!(options.click_reach >= 0.0 && options.click_reach <= 8.0)) {
    return InvalidArgument("AggregatorOptions.click_reach must be in [0, 8], got " +
                           std::to_string(options.click_reach));
  }
  if (!(options.edge_band >= 0.0 && options.edge_band <= 4.0)) {
    return InvalidArgument("AggregatorOptions.edge_band must be in [0, 4], got " +
                           std::to_string(options.edge_band));
  }
  return Aggregator(options);
}

Result<torch::Tensor> Aggregator::VoteFractions(const torch::Tensor& samples, int64_t num_classes) {
  if (!samples.defined() || (samples.dim() != 3 && samples.dim() != 4)) {
    return InvalidArgument("samples must be [N,H,W] or [B,N,H,W], got " +
                           (samples.defined() ? ShapeString(samples) : std::string("undefined")));
  }
  if (torch::isFloatingType(samples.scalar_type()) || samples.scalar_type() == torch::kBool ||
      torch::isComplexType(samples.scalar_type())) {
    return InvalidArgument(std::string("samples must hold integer class ids, got dtype ") +
                           c10::toString(samples.scalar_type()));
  }
  const int64_t n_dim = samples.dim() - 3;
  if (samples.numel() == 0 || samples.size(n_dim) == 0) {
    return InvalidArgument("samples are empty: " + ShapeString(samples));
  }
  try {
    const int64_t lo = samples.min().item<int64_t>();
    const int64_t hi = samples.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      return InvalidArgument("samples hold class id " + std::to_string(lo < 0 ? lo : hi) +
                             " outside [0, " + std::to_string(num_classes) + ")");
    }
    const float inv_n = 1.0f / static_cast<float>(samples.size(n_dim));
    std::vector<torch::Tensor> per_class;
    per_class.reserve(num_classes);
    for (int64_t c = 0; c < num_classes; ++c) {
      per_class.push_back((samples == c).sum(n_dim).to(torch::kFloat) * inv_n);
    }
    return torch::stack(per_class, n_dim);
  } catch (const std::exception& e) {
    return Internal(std::string("VoteFractions: ") + e.what());
  }
}

Result<Aggregation> Aggregator::Aggregate(const torch::Tensor& samples) const {
  Result<torch::Tensor> fractions = VoteFractions(samples, options_.num_classes);
  if (!fractions.ok()) return fractions.status();
  return Decide(*fractions);
}

Result<Aggregation> Aggregator::Decide(const torch::Tensor& fractions) const {
  if (!fractions.defined() || fractions.dim() < 2) {
    return InvalidArgument("vote fractions must be [K,H,W] or [B,K,H,W]");
  }
  return DecideAtSize(fractions, fractions.size(-2), fractions.size(-1));
}

Result<Aggregation> Aggregator::DecideAtSize(const torch::Tensor& fractions, int64_t height,
                                             int64_t width) const {
  const int64_t k = options_.num_classes;
  if (!fractions.defined() || (fractions.dim() != 3 && fractions.dim() != 4) ||
      fractions.size(fractions.dim() - 3) != k) {
    return InvalidArgument(
        "vote fractions must be [K,H,W] or [B,K,H,W] with K = " + std::to_string(k) + ", got " +
        (fractions.defined() ? ShapeString(fractions) : "undefined"));
  }
  if (!torch::isFloatingType(fractions.scalar_type())) {
    return InvalidArgument(std::string("vote fractions must be floating point, got dtype ") +
                           c10::toString(fractions.scalar_type()));
  }
  if (height <= 0 || width <= 0) {
    return InvalidArgument("output size must be positive, got " + std::to_string(height) + "x" +
                           std::to_string(width));
  }
  try {
    const bool single = fractions.dim() == 3;
    const torch::Tensor f = (single ? fractions.unsqueeze(0) : fractions).to(torch::kFloat);
    const torch::Tensor raw = Resize(f, height, width);
    torch::Tensor mask;
    switch (options_.rule) {
      case AggregationRule::kMajority:
        mask = raw.argmax(1);  // first maximum: lowest class id on ties
        break;
      case AggregationRule::kThreshold: {
        std::vector<float> thresholds;
        for (int64_t c = 1; c < k; ++c) {
          thresholds.push_back(static_cast<float>(options_.class_thresholds.empty()
                                                      ? options_.threshold
                                                      : options_.class_thresholds[c]));
        }
        const torch::Tensor thr =
            torch::tensor(thresholds, torch::TensorOptions().device(raw.device()))
                .view({1, k - 1, 1, 1});
        const torch::Tensor fg = raw.slice(1, 1);
        mask = PickForeground(fg, fg >= thr);
        break;
      }
      case AggregationRule::kDensity: {
        const torch::Tensor smooth = Resize(
            GaussianBlur(f.slice(1, 1).contiguous(), options_.density_sigma, torch::kConstant),
            height, width);
        torch::Tensor candidate;
        if (options_.density_absolute_threshold > 0.0) {
          candidate = smooth >= static_cast<float>(options_.density_absolute_threshold);
        } else {
          const torch::Tensor peak = smooth.amax({2, 3}, /*keepdim=*/true);
          candidate = (smooth >= peak * static_cast<float>(options_.density_relative_threshold)) &
                      (peak > 0.0f);
        }
        // A class with no votes at all must never appear, even through zero-padding artefacts.
        candidate = candidate & (smooth > 0.0f);
        mask = PickForeground(smooth, candidate);
        break;
      }
      case AggregationRule::kOtsu: {
        const torch::Tensor small =
            GaussianBlur(f.slice(1, 1).contiguous(), options_.density_sigma, torch::kConstant);
        const torch::Tensor cut = OtsuThresholds(small);
        const torch::Tensor smooth = Resize(small, height, width);
        // Bilinear resizing never exceeds the map's peak: a class whose peak is below the floor has
        // no pixel at or above it.
        const torch::Tensor candidate =
            (smooth >= cut) & (smooth >= static_cast<float>(options_.otsu_floor));
        mask = PickForeground(smooth, candidate);
        break;
      }
    }
    Aggregation out;
    out.mask = mask.to(torch::kLong);
    out.uncertainty = Uncertainty(raw, options_.uncertainty);
    out.vote_fractions = raw;
    if (single) {
      out.mask = out.mask.squeeze(0);
      out.uncertainty = out.uncertainty.squeeze(0);
      out.vote_fractions = out.vote_fractions.squeeze(0);
    }
    return out;
  } catch (const std::exception& e) {
    return Internal(std::string("Aggregator: ") + e.what());
  }
}

Result<Aggregation> Aggregator::AggregateOnImage(const torch::Tensor& samples,
                                                 const GridMapping& mapping,
                                                 const std::vector<Click>& clicks,
                                                 const torch::Tensor& grid_image,
                                                 const torch::Tensor& image) const {
  for (const Click& c : clicks) {
    if (c.x < 0 || c.y < 0 || c.x >= mapping.width || c.y >= mapping.height) {
      return InvalidArgument("a click at (x=" + std::to_string(c.x) + ", y=" + std::to_string(c.y) +
                             ") lies outside the " + std::to_string(mapping.width) + "x" +
                             std::to_string(mapping.height) + " image");
    }
  }
  if (samples.dim() < 2 || samples.size(-1) != mapping.resolution ||
      samples.size(-2) != mapping.resolution) {
    return InvalidArgument("samples " + ShapeString(samples) + " are not on the mapping's " +
                           std::to_string(mapping.resolution) + "x" +
                           std::to_string(mapping.resolution) + " grid");
  }
  const bool snap = options_.edge_band > 0 && image.defined();
  if (snap &&
      (image.dim() != 3 || image.size(1) != mapping.height || image.size(2) != mapping.width)) {
    return InvalidArgument("the image a mask snaps to must be [C," +
                           std::to_string(mapping.height) + "," + std::to_string(mapping.width) +
                           "], its own size, not " + ShapeString(image));
  }
  Result<torch::Tensor> fractions = VoteFractions(samples, options_.num_classes);
  if (!fractions.ok()) return fractions.status();
  Result<Aggregation> result =
      DecideAtSize(CropToImage(*fractions, mapping), mapping.region.height, mapping.region.width);
  if (!result.ok()) return result;
  if (mapping.Cropped()) {
    // Outside the region is background, certainly.
    try {
      const torch::Tensor& f = result->vote_fractions;
      result->mask = PlaceInImage(result->mask, mapping, 0);
      result->uncertainty = PlaceInImage(result->uncertainty, mapping, 0);
      result->vote_fractions = torch::cat(
          {PlaceInImage(f.slice(0, 0, 1), mapping, 1), PlaceInImage(f.slice(0, 1), mapping, 0)});
    } catch (const std::exception& e) {
      return Internal(std::string("Aggregator: placing the region's mask in the image: ") +
                      e.what());
    }
  }
  if (snap) {
    // Grid cells in the image's pixels.
    const double cell = static_cast<double>(mapping.side) / static_cast<double>(mapping.resolution);
    try {
      result->mask = SnapToEdges(image, result->mask, options_.num_classes,
                                 std::llround(options_.edge_band * cell), 0.5 * cell);
    } catch (const std::exception& e) {
      return Internal(std::string("Aggregator: snapping the mask to the image's edges: ") +
                      e.what());
    }
  }
  if (clicks.empty()) return result;
  if (options_.click_reach > 0 && grid_image.defined()) {
    CLICKDIFF_RETURN_IF_ERROR(Correct(*fractions, mapping, clicks, grid_image, result->mask));
  }
  ImposeClicks(result->mask.unsqueeze(0), clicks);
  return result;
}

Status Aggregator::Correct(const torch::Tensor& fractions, const GridMapping& mapping,
                           const std::vector<Click>& clicks, const torch::Tensor& grid_image,
                           torch::Tensor& mask) const {
  if (grid_image.dim() != 3 || grid_image.size(1) != fractions.size(-2) ||
      grid_image.size(2) != fractions.size(-1)) {
    return InvalidArgument("the grid image of a click correction must be [C,R,R] like the samples");
  }
  // The mask drawn on the grid is read only for clicks of unknown gap (offline ones).
  torch::Tensor drawn;
  if (std::any_of(clicks.begin(), clicks.end(), [](const Click& c) { return c.gap < 0; })) {
    Result<Aggregation> on_grid = Decide(fractions);
    if (!on_grid.ok()) return on_grid.status();
    drawn = on_grid->mask;
  }
  try {
    for (const ClickCorrection& c :
         ClickCorrections(grid_image, drawn, ClicksToGrid(clicks, mapping), options_.click_reach)) {
      const torch::Tensor reach =
          PlaceInImage(Resize(CropToImage(c.reach, mapping).unsqueeze(0).unsqueeze(0),
                              mapping.region.height, mapping.region.width)[0][0],
                       mapping, 2.0)
              .to(mask.device());
      mask.masked_fill_(reach.le(1), c.class_id);
    }
  } catch (const std::exception& e) {
    return Internal(std::string("Aggregator: correcting the mask at its clicks: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace clickdiff::model
