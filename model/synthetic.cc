#include "model/synthetic.h"

#include <cmath>
#include <random>

#include "model/diffusion.h"
#include "model/preprocess.h"

namespace clickdiff::model {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A smooth random field in about [-1, 1]: coarse Gaussian noise upsampled bilinearly.
torch::Tensor SmoothField(int64_t h, int64_t w, int64_t cells, at::Generator& gen) {
  auto coarse = torch::randn({1, 1, cells, cells}, gen, torch::kFloat);
  return torch::upsample_bilinear2d(coarse, {h, w}, /*align_corners=*/true).view({h, w}) * 0.5;
}

// Tints a gray image [H,W]: class c of `mask` gets the hue angle `hues[c]`, a chroma of length
// `saturation` in the plane of zero Rec. 709 luminance (so the gray value is kept). -> [3,H,W].
torch::Tensor Tint(const torch::Tensor& gray, const torch::Tensor& mask,
                   const std::vector<double>& hues, double saturation) {
  const auto luma = torch::tensor({kRec709[0], kRec709[1], kRec709[2]});
  const auto e1 = torch::linalg_cross(luma, torch::tensor({0.0f, 0.0f, 1.0f}));
  const auto u = e1 / e1.norm();
  const auto v = torch::linalg_cross(luma, u);
  const auto v_unit = v / v.norm();
  auto chroma = torch::zeros({3, gray.size(0), gray.size(1)});
  for (size_t c = 0; c < hues.size(); ++c) {
    const auto tint = saturation * (std::cos(hues[c]) * u + std::sin(hues[c]) * v_unit);
    chroma =
        torch::where(mask.eq(static_cast<int64_t>(c)).unsqueeze(0), tint.view({3, 1, 1}), chroma);
  }
  return (gray.unsqueeze(0) + chroma).clamp(0, 1);
}

SyntheticSample GenerateOne(const SyntheticOptions& o, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto gen = MakeGenerator(seed ^ 0x9E3779B97F4A7C15ULL);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const int64_t h = o.height, w = o.width;
  const double side = static_cast<double>(std::min(h, w));
  const auto ys = torch::arange(h, torch::kFloat).view({h, 1}).expand({h, w});
  const auto xs = torch::arange(w, torch::kFloat).view({1, w}).expand({h, w});

  // Background: low-frequency shading + a mid-frequency mottling + strong pixel noise.
  auto image = 0.5 + 0.25 * SmoothField(h, w, 4, gen) + 0.12 * SmoothField(h, w, 12, gen) +
               o.background_noise * torch::randn({h, w}, gen, torch::kFloat);
  auto mask = torch::zeros({h, w}, torch::kLong);
  std::vector<torch::Tensor> objects;

  for (int64_t c = 1; c < o.num_classes; ++c) {
    const double r0 = side * (o.min_radius_fraction +
                              (o.max_radius_fraction - o.min_radius_fraction) * unit(rng));
    const double margin = r0 * 1.2 + 1;
    const double cx = margin + (w - 2 * margin) * unit(rng);
    const double cy = margin + (h - 2 * margin) * unit(rng);
    const double stretch = 0.75 + 0.5 * unit(rng), angle = kPi * unit(rng);
    const auto dx = xs - cx, dy = ys - cy;
    const auto u = (dx * std::cos(angle) + dy * std::sin(angle)) / stretch;
    const auto v = (-dx * std::sin(angle) + dy * std::cos(angle)) * stretch;
    const auto theta = torch::atan2(v, u);
    const auto radius = torch::sqrt(u * u + v * v);
    auto boundary = torch::full({h, w}, r0);
    for (int k = 2; k <= 4; ++k) {
      boundary = boundary + r0 * 0.15 * unit(rng) * torch::cos(k * theta + 2 * kPi * unit(rng));
    }
    const auto inside = radius < boundary;
    const auto rim = inside.logical_and(radius >= boundary - 1.5);

    // Organ intensity drawn from the background's own range; smooth interior, contrasting rim.
    const double level = 0.5 + 0.25 * (2 * unit(rng) - 1);
    auto organ = level + 0.05 * SmoothField(h, w, 4, gen) +
                 o.organ_noise * torch::randn({h, w}, gen, torch::kFloat);
    if (c >= 2) {
      const double period = 3.0 + c, phase = 2 * kPi * unit(rng);
      organ = organ + 0.08 * torch::sin(2 * kPi * (xs + ys) / period + phase);
    }
    const double rim_sign = unit(rng) < 0.5 ? -1.0 : 1.0;
    organ = torch::where(rim, organ + rim_sign * 0.2, organ);
    image = torch::where(inside, organ, image);
    mask = torch::where(inside, torch::full({}, c, torch::kLong), mask);
    for (auto& previous : objects) previous = previous.logical_and(inside.logical_not());
    objects.push_back(inside);
  }
  image = (image + 0.03 * torch::randn({h, w}, gen, torch::kFloat)).clamp(0, 1);

  SyntheticSample out;
  out.image = image.unsqueeze(0).contiguous();
  out.mask = mask;
  for (size_t i = 0; i < objects.size(); ++i) {
    const auto pixels = objects[i].nonzero();  // [P,2] (y, x)
    if (pixels.size(0) == 0) continue;
    std::uniform_int_distribution<int64_t> pick(0, pixels.size(0) - 1);
    const int64_t p = pick(rng);
    Click click;
    click.y = pixels[p][0].item<int64_t>();
    click.x = pixels[p][1].item<int64_t>();
    click.class_id = static_cast<int64_t>(i) + 1;
    out.clicks.push_back(click);
  }
  if (o.color) {
    // Drawn after everything else, so image and clicks match the gray generator's.
    std::vector<double> hues;
    const double background_hue = 2 * kPi * unit(rng);
    for (int64_t c = 0; c < o.num_classes; ++c) {
      hues.push_back(background_hue + 2 * kPi * static_cast<double>(c) / o.num_classes);
    }
    out.image = Tint(image, mask, hues, o.saturation).contiguous();
  }
  return out;
}

}  // namespace

std::vector<SyntheticSample> GenerateSynthetic(const SyntheticOptions& options, int64_t count,
                                               uint64_t seed) {
  std::vector<SyntheticSample> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(count, 0)));
  for (int64_t i = 0; i < count; ++i) {
    out.push_back(GenerateOne(options, seed * 1000003ULL + static_cast<uint64_t>(i)));
  }
  return out;
}

}  // namespace clickdiff::model
