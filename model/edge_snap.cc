#include "model/edge_snap.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "model/blur.h"
#include "model/click_guidance.h"

namespace clickdiff::model {

namespace F = torch::nn::functional;

torch::Tensor SnapToEdges(const torch::Tensor& image, const torch::Tensor& mask,
                          int64_t num_classes, int64_t band, double sigma) {
  TORCH_CHECK(mask.dim() == 2 && image.dim() == 3 && image.size(1) == mask.size(0) &&
                  image.size(2) == mask.size(1),
              "SnapToEdges: the image ", image.sizes(), " and the mask ", mask.sizes(),
              " are not [C,H,W] and [H,W] of one size");
  torch::NoGradGuard no_grad;
  auto ids = mask.detach().to(torch::kCPU, torch::kLong).clone();
  const int64_t h = ids.size(0), w = ids.size(1);
  // The pixels with a 4-neighbour of another class; only a margin around them is searched: the
  // band, the seeds just beyond it and the blur's reach.
  auto boundary = torch::zeros({h, w}, torch::kBool);
  const auto across = ids.slice(1, 1).ne(ids.slice(1, 0, w - 1));
  const auto down = ids.slice(0, 1).ne(ids.slice(0, 0, h - 1));
  boundary.slice(1, 1).logical_or_(across);
  boundary.slice(1, 0, w - 1).logical_or_(across);
  boundary.slice(0, 1).logical_or_(down);
  boundary.slice(0, 0, h - 1).logical_or_(down);
  if (band < 1 || !boundary.any().item<bool>()) return ids.to(mask.device());
  const auto at = boundary.nonzero();
  const int64_t margin = band + 2 + static_cast<int64_t>(std::ceil(3 * std::max(sigma, 0.0)));
  const int64_t y0 = std::max<int64_t>(at.select(1, 0).min().item<int64_t>() - margin, 0);
  const int64_t y1 = std::min<int64_t>(at.select(1, 0).max().item<int64_t>() + margin + 1, h);
  const int64_t x0 = std::max<int64_t>(at.select(1, 1).min().item<int64_t>() - margin, 0);
  const int64_t x1 = std::min<int64_t>(at.select(1, 1).max().item<int64_t>() + margin + 1, w);
  auto box = ids.slice(0, y0, y1).slice(1, x0, x1);  // a view: written through at the end
  const int64_t bh = box.size(0), bw = box.size(1);

  auto img = torch::nan_to_num(
      image.detach().to(torch::kCPU, torch::kFloat).slice(1, y0, y1).slice(2, x0, x1), 0, 0, 0);
  const float lo = img.min().item<float>(), hi = img.max().item<float>();
  if (!(hi > lo)) return ids.to(mask.device());
  // Halved first, as model::ImageToGrid does: the difference of two float extremes overflows.
  img = (img * 0.5F - lo * 0.5F) / (hi * 0.5F - lo * 0.5F);
  if (sigma > 0) img = GaussianBlur(img.unsqueeze(0), sigma, torch::kReplicate)[0];

  // Seeds: each class's pixels farther than the band from another class (chamfer distance, the
  // geodesic distance's own steps on a flat image; the image's border is no class), and its centre
  // line (a depth no neighbour of its class exceeds), so a structure thinner than the band keeps
  // its middle.
  const auto flat = torch::zeros({1, bh, bw});
  std::vector<torch::Tensor> seeds(static_cast<size_t>(num_classes));
  auto in_band = torch::ones({bh, bw}, torch::kBool);
  for (int64_t c = 0; c < num_classes; ++c) {
    const auto is = box.eq(c);
    if (!is.any().item<bool>()) continue;
    const auto depth = torch::where(
        is, GeodesicDistance(flat, is.logical_not()).clamp_max(static_cast<double>(band + 1)), 0);
    const auto deepest =
        F::max_pool2d(depth.view({1, 1, bh, bw}), F::MaxPool2dFuncOptions(3).stride(1).padding(1))
            .view({bh, bw});
    auto& seed = seeds[static_cast<size_t>(c)];
    seed = is.logical_and(depth.gt(static_cast<double>(band)).logical_or(depth.ge(deepest)));
    in_band.logical_and_(seed.logical_not());
  }
  // What the image's edges add to the way from each class's seeds: the geodesic distance on the
  // image less the same on a flat image. A band pixel takes the class whose way crosses the least
  // edge, and only when its own class's way crosses more than a step's length beyond that; on a
  // flat image every way crosses none, so nothing moves, corners included.
  auto least = torch::full({bh, bw}, std::numeric_limits<float>::infinity());
  auto best = box.clone();
  auto own_excess = torch::zeros({bh, bw});
  for (int64_t c = 0; c < num_classes; ++c) {
    const torch::Tensor& seed = seeds[static_cast<size_t>(c)];
    if (!seed.defined()) continue;
    const auto excess = GeodesicDistance(img, seed) - GeodesicDistance(flat, seed);
    const auto lower = excess.lt(least);
    least = torch::where(lower, excess, least);
    best.masked_fill_(lower, c);
    own_excess = torch::where(box.eq(c), excess, own_excess);
  }
  const auto moves = in_band.logical_and(own_excess.gt(least + 1.0F));
  auto snapped = torch::where(moves, best, box);
  box.copy_(snapped);
  return ids.to(mask.device());
}

}  // namespace clickdiff::model
