#include "model/click_guidance.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "model/blur.h"

namespace clickdiff::model {

namespace {

// One-hot [B,K,H,W] float of the shown clicks.
torch::Tensor ClickPoints(const torch::Tensor& labels, const torch::Tensor& shown,
                          int64_t num_classes) {
  return torch::one_hot(labels, num_classes)
      .permute({0, 3, 1, 2})
      .to(torch::kFloat)
      .mul(shown.unsqueeze(1).to(torch::kFloat));
}

torch::Tensor GaussianGuidance(const torch::Tensor& labels, const torch::Tensor& shown,
                               int64_t num_classes) {
  const int64_t h = labels.size(1), w = labels.size(2);
  // Each click's bump keeps its peak of 1.
  return SeparableFilter(ClickPoints(labels, shown, num_classes),
                         GaussianKernel(ClickGuidanceSigma(std::max(h, w))), torch::kConstant)
      .clamp_max(1);
}

torch::Tensor GeodesicGuidance(const torch::Tensor& labels, const torch::Tensor& shown,
                               int64_t num_classes, const torch::Tensor& images) {
  const int64_t b = labels.size(0), h = labels.size(1), w = labels.size(2);
  if (!images.defined() || images.dim() != 4 || images.size(0) != b || images.size(2) != h ||
      images.size(3) != w) {
    throw std::invalid_argument("geodesic click guidance needs the images [B,C,H,W] of its clicks");
  }
  const double sigma = GeodesicGuidanceSigma(std::max(h, w));
  std::vector<torch::Tensor> maps;
  for (int64_t i = 0; i < b; ++i) {
    const auto d = ClickDistances(images[i], labels[i], shown[i], num_classes);
    maps.push_back(torch::exp(-d.square() / (2 * sigma * sigma)));  // 0 where d is inf
  }
  return torch::stack(maps).to(labels.device());
}

// `image` [C,H,W] on the CPU blurred by a Gaussian of one cell: what click distances are measured
// on, so single-pixel noise is no wall.
torch::Tensor GeodesicInput(const torch::Tensor& image) {
  return GaussianBlur(image.detach().to(torch::kCPU, torch::kFloat).unsqueeze(0), 1.0,
                      torch::kReplicate)[0];
}

// An [h,w] bool map of the click's cell alone.
torch::Tensor Seed(int64_t h, int64_t w, const Click& c) {
  auto seed = torch::zeros({h, w}, torch::kBool);
  seed[c.y][c.x] = true;
  return seed;
}

}  // namespace

double ClickGuidanceSigma(int64_t resolution) {
  return std::max(1.0, static_cast<double>(resolution) / 32.0);
}

double GeodesicGuidanceSigma(int64_t resolution) {
  return std::max(1.0, static_cast<double>(resolution) / 8.0);
}

torch::Tensor GeodesicDistance(const torch::Tensor& image, const torch::Tensor& seeds) {
  return GeodesicDistanceFrom(image,
                              torch::full(seeds.sizes(), std::numeric_limits<float>::infinity())
                                  .masked_fill_(seeds.to(torch::kCPU, torch::kBool), 0));
}

torch::Tensor GeodesicDistanceFrom(const torch::Tensor& image, const torch::Tensor& start) {
  // A non-finite pixel would poison the scale and block every path through it: read it as 0.
  const auto img = torch::nan_to_num(image.to(torch::kCPU, torch::kFloat), 0, 0, 0).contiguous();
  const int64_t c = img.size(0), h = img.size(1), w = img.size(2);
  TORCH_CHECK(start.dim() == 2 && start.size(0) == h && start.size(1) == w,
              "GeodesicDistanceFrom: the start ", start.sizes(), " is not [H,W] of the image ",
              img.sizes());
  // The image's own scale of change: the mean colour difference between 4-neighbours, at least
  // one 8-bit level, so the faint steps of a nearly flat image do not become walls.
  const double across = w > 1 ? img.diff(1, 2).square().sum(0).sqrt().mean().item<double>() : 0;
  const double down = h > 1 ? img.diff(1, 1).square().sum(0).sqrt().mean().item<double>() : 0;
  const double scale = std::max((across + down) / 2, 1.0 / 255);
  const auto inverse = static_cast<float>(1 / scale);
  const float* pixels = img.data_ptr<float>();
  const int64_t plane = h * w;
  const auto cost = [&](int64_t p, int64_t q, float length) {
    float sum = 0;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float diff = pixels[ch * plane + p] - pixels[ch * plane + q];
      sum += diff * diff;
    }
    return length * (1 + std::sqrt(sum) * inverse);
  };
  auto distance = start.to(torch::kCPU, torch::kFloat).clone().contiguous();
  float* d = distance.data_ptr<float>();
  const auto diagonal = static_cast<float>(std::sqrt(2.0));
  struct Step {
    int64_t dx, dy;
    float length;
  };
  // The neighbours a forward raster scan has already visited; a backward scan mirrors them.
  const std::array<Step, 4> before = {
      {{-1, -1, diagonal}, {0, -1, 1.0F}, {1, -1, diagonal}, {-1, 0, 1.0F}}};
  const auto relax = [&](int64_t x, int64_t y, int sign) {
    const int64_t p = y * w + x;
    for (const Step& s : before) {
      const int64_t nx = x + sign * s.dx, ny = y + sign * s.dy;
      if (nx < 0 || nx >= w || ny < 0 || ny >= h) continue;
      const int64_t q = ny * w + nx;
      d[p] = std::min(d[p], d[q] + cost(p, q, s.length));
    }
  };
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) relax(x, y, 1);
    }
    for (int64_t y = h - 1; y >= 0; --y) {
      for (int64_t x = w - 1; x >= 0; --x) relax(x, y, -1);
    }
  }
  return distance;
}

torch::Tensor ClickDistances(const torch::Tensor& image, const torch::Tensor& labels,
                             const torch::Tensor& shown, int64_t num_classes) {
  const auto smooth = GeodesicInput(image);
  const int64_t h = smooth.size(1), w = smooth.size(2);
  const auto points =
      ClickPoints(labels.unsqueeze(0), shown.unsqueeze(0), num_classes).to(torch::kCPU)[0].gt(0);
  auto out = torch::full({num_classes, h, w}, std::numeric_limits<float>::infinity());
  for (int64_t k = 0; k < num_classes; ++k) {
    if (points[k].any().item<bool>()) out[k].copy_(GeodesicDistance(smooth, points[k]));
  }
  return out;
}

torch::Tensor ClickGuidance(const torch::Tensor& labels, const torch::Tensor& shown,
                            int64_t num_classes, ClickGuidanceKind kind,
                            const torch::Tensor& images) {
  if (kind == ClickGuidanceKind::kGeodesic) {
    return GeodesicGuidance(labels, shown, num_classes, images);
  }
  return GaussianGuidance(labels, shown, num_classes);
}

torch::Tensor ClickGuidance(const std::vector<std::vector<Click>>& clicks, int64_t num_classes,
                            int64_t resolution, torch::Device device, ClickGuidanceKind kind,
                            const torch::Tensor& images) {
  // Each image's clicks as a click example paints them: its target (the classes) and known pixels.
  const auto grid = torch::zeros({1, resolution, resolution});
  std::vector<torch::Tensor> labels, shown;
  for (const std::vector<Click>& image_clicks : clicks) {
    Result<TrainingExample> painted = MakeClickExample(grid, image_clicks, num_classes);
    if (!painted.ok()) throw std::invalid_argument(painted.status().ToString());  // precondition
    labels.push_back(painted->target);
    shown.push_back(painted->known);
  }
  if (clicks.empty()) return torch::zeros({0, num_classes, resolution, resolution}, device);
  return ClickGuidance(torch::stack(labels).to(device), torch::stack(shown).to(device), num_classes,
                       kind, images);
}

std::vector<Click> ClicksToGrid(const std::vector<Click>& clicks, const GridMapping& mapping) {
  std::vector<Click> grid;
  grid.reserve(clicks.size());
  for (const Click& c : clicks) {
    auto [gx, gy] = mapping.ToGrid(c.x, c.y);
    grid.push_back(Click{gx, gy, c.class_id, c.positive, c.gap});
  }
  return grid;
}

std::vector<ClickCorrection> ClickCorrections(const torch::Tensor& image, const torch::Tensor& mask,
                                              const std::vector<Click>& clicks, double reach) {
  std::vector<ClickCorrection> out;
  if (clicks.empty() || reach <= 0) return out;
  const int64_t h = image.size(1), w = image.size(2);
  const double cap = GeodesicGuidanceSigma(std::max(h, w));
  const double own = ClickRegionRadius(std::max(h, w));
  torch::Tensor smooth, drawn;
  std::vector<int64_t> placed;  // classes whose first positive click has been seen
  for (const Click& c : clicks) {
    const int64_t wanted = c.positive ? c.class_id : 0;
    const bool known = c.gap >= 0;  // measured when the click was made, on the mask it was made on
    if (!known && c.positive && std::find(placed.begin(), placed.end(), wanted) == placed.end()) {
      placed.push_back(wanted);  // says where the structure is, not where the mask errs
      continue;
    }
    if (known && c.gap == 0) continue;
    if (!smooth.defined()) smooth = GeodesicInput(image);
    const auto distance = GeodesicDistance(smooth, Seed(h, w, c));
    double gap = c.gap;
    if (!known) {
      if (!drawn.defined()) drawn = mask.to(torch::kCPU, torch::kLong);
      // A network that learnt from clicks draws each shown click's own region (ClickRegionRadius,
      // as training labels it) whatever else it gets wrong: the click is held when the ring
      // beyond that region mostly takes its class.
      const auto beyond = distance.gt(own);
      const auto ring = beyond.logical_and(distance.le(2 * own));
      if (ring.any().item<bool>() &&
          drawn.masked_select(ring).eq(wanted).to(torch::kFloat).mean().item<double>() >= 0.5) {
        continue;
      }
      const auto same = drawn.eq(wanted).logical_and(beyond);
      if (!same.any().item<bool>()) continue;
      gap = distance.masked_select(same).min().item<double>();
    }
    out.push_back({wanted, (distance / (reach * std::min(gap, cap))).clamp_max(2)});
  }
  return out;
}

double CorrectionGap(const torch::Tensor& image, const torch::Tensor& mask, const Click& click) {
  const auto drawn = mask.to(torch::kCPU, torch::kLong);
  const int64_t wanted = click.positive ? click.class_id : 0;
  if (drawn[click.y][click.x].item<int64_t>() == wanted) return 0;
  const auto same = drawn.eq(wanted);
  if (!same.any().item<bool>()) return 0;
  const int64_t h = drawn.size(0), w = drawn.size(1);
  const auto distance = GeodesicDistance(GeodesicInput(image), Seed(h, w, click));
  return std::min(distance.masked_select(same).min().item<double>(),
                  GeodesicGuidanceSigma(std::max(h, w)));
}

void ImposeClicks(torch::Tensor samples, const std::vector<Click>& clicks) {
  for (const Click& c : clicks) {
    samples.select(2, c.x).select(1, c.y).fill_(c.positive ? c.class_id : 0);
  }
}

}  // namespace clickdiff::model
