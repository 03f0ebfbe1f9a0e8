#include "model/click_guidance.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace clickdiff::model {

double ClickGuidanceSigma(int64_t resolution) {
  return std::max(1.0, static_cast<double>(resolution) / 32.0);
}

torch::Tensor ClickGuidance(const torch::Tensor& labels, const torch::Tensor& shown,
                            int64_t num_classes) {
  const int64_t b = labels.size(0), h = labels.size(1), w = labels.size(2);
  const auto points = torch::one_hot(labels, num_classes)
                          .permute({0, 3, 1, 2})
                          .to(torch::kFloat)
                          .mul(shown.unsqueeze(1).to(torch::kFloat));
  const double sigma = ClickGuidanceSigma(std::max(h, w));
  const auto radius = static_cast<int64_t>(std::ceil(3 * sigma));
  const auto offsets =
      torch::arange(-radius, radius + 1, torch::TensorOptions().dtype(torch::kFloat));
  const auto bump = torch::exp(-offsets.square() / (2 * sigma * sigma)).to(labels.device());
  // Separable: rows, then columns; each click's bump keeps its peak of 1.
  auto maps = points.reshape({b * num_classes, 1, h, w});
  const torch::Tensor no_bias;
  const std::vector<int64_t> stride = {1, 1}, rows = {radius, 0}, columns = {0, radius};
  maps = torch::conv2d(maps, bump.view({1, 1, -1, 1}), no_bias, at::IntArrayRef(stride),
                       at::IntArrayRef(rows));
  maps = torch::conv2d(maps, bump.view({1, 1, 1, -1}), no_bias, at::IntArrayRef(stride),
                       at::IntArrayRef(columns));
  return maps.reshape({b, num_classes, h, w}).clamp_max(1);
}

torch::Tensor ClickGuidance(const std::vector<std::vector<Click>>& clicks, int64_t num_classes,
                            int64_t resolution, torch::Device device) {
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
  return ClickGuidance(torch::stack(labels).to(device), torch::stack(shown).to(device),
                       num_classes);
}

std::vector<Click> ClicksToGrid(const std::vector<Click>& clicks, const GridMapping& mapping) {
  std::vector<Click> grid;
  grid.reserve(clicks.size());
  for (const Click& c : clicks) {
    auto [gx, gy] = mapping.ToGrid(c.x, c.y);
    grid.push_back(Click{gx, gy, c.class_id, c.positive});
  }
  return grid;
}

void ImposeClicks(torch::Tensor samples, const std::vector<Click>& clicks) {
  for (const Click& c : clicks) {
    samples.select(2, c.x).select(1, c.y).fill_(c.positive ? c.class_id : 0);
  }
}

}  // namespace clickdiff::model
