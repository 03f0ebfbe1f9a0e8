// model/blur.h — the separable Gaussian filter the aggregator (vote densities), the click
// guidance (click bumps, the image the geodesic distance runs on) and edge snapping share. Internal
// to model/.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>

namespace clickdiff::model {

// exp(-x^2 / 2 sigma^2) at the integers x in [-ceil(3 sigma), ceil(3 sigma)], float on the CPU:
// peak 1 (divide by its sum for a filter that keeps the mean).
inline torch::Tensor GaussianKernel(double sigma) {
  const auto radius = static_cast<int64_t>(std::ceil(3 * sigma));
  const auto offsets =
      torch::arange(-radius, radius + 1, torch::TensorOptions().dtype(torch::kFloat));
  return torch::exp(-offsets.square() / (2 * sigma * sigma));
}

// Each channel of `x` [B,C,H,W] convolved with the odd 1-D `kernel` along rows, then columns,
// padded by `pad` (torch::kConstant: zeros; torch::kReplicate: the edge repeated); same shape.
inline torch::Tensor SeparableFilter(const torch::Tensor& x, const torch::Tensor& kernel,
                                     torch::nn::functional::PadFuncOptions::mode_t pad) {
  namespace F = torch::nn::functional;
  const int64_t radius = (kernel.size(0) - 1) / 2;
  const auto k = kernel.to(x.device());
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto y = F::pad(x.reshape({b * c, 1, h, w}), F::PadFuncOptions({radius, radius, 0, 0}).mode(pad));
  y = torch::conv2d(y, k.view({1, 1, 1, -1}));
  y = F::pad(y, F::PadFuncOptions({0, 0, radius, radius}).mode(pad));
  y = torch::conv2d(y, k.view({1, 1, -1, 1}));
  return y.reshape({b, c, h, w});
}

// Each channel of `x` [B,C,H,W] blurred by a Gaussian of `sigma` (in pixels) that keeps the
// mean, padded by `pad`; same shape.
inline torch::Tensor GaussianBlur(const torch::Tensor& x, double sigma,
                                  torch::nn::functional::PadFuncOptions::mode_t pad) {
  const auto kernel = GaussianKernel(sigma);
  return SeparableFilter(x, kernel / kernel.sum(), pad);
}

}  // namespace clickdiff::model
