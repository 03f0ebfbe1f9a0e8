#include "model/diffusion.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

namespace clickdiff::model {

torch::Tensor DiffusionProcess::NetworkTime(const torch::Tensor& timesteps) const {
  return timesteps.to(torch::kFloat) * (1000.0 / static_cast<double>(NumTimesteps()));
}

std::vector<int64_t> RespacedTimesteps(int64_t num_timesteps, int64_t steps) {
  if (steps <= 0 || steps > num_timesteps) steps = num_timesteps;
  std::vector<int64_t> out;
  for (int64_t i = steps; i >= 0; --i) {
    out.push_back(static_cast<int64_t>(
        std::llround(static_cast<double>(i) * num_timesteps / static_cast<double>(steps))));
  }
  return out;
}

torch::Tensor RandUniform(at::IntArrayRef shape, at::Generator& gen, torch::Device device) {
  return torch::rand(shape, gen, torch::TensorOptions().dtype(torch::kFloat)).to(device);
}

torch::Tensor RandNormal(at::IntArrayRef shape, at::Generator& gen, torch::Device device) {
  return torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat)).to(device);
}

torch::Tensor RandTimesteps(int64_t n, int64_t num_timesteps, at::Generator& gen,
                            torch::Device device) {
  return torch::randint(1, num_timesteps + 1, {n}, gen, torch::TensorOptions().dtype(torch::kLong))
      .to(device);
}

torch::Tensor SampleCategorical(const torch::Tensor& probs, at::Generator& gen) {
  const auto u = RandUniform({probs.size(0), 1, probs.size(2), probs.size(3)}, gen, probs.device());
  const auto cdf = probs.to(torch::kFloat).cumsum(1);
  // Index of the first class whose CDF exceeds u; clamp guards against rounding at the top.
  return (cdf <= u).sum(1).clamp_max(probs.size(1) - 1).to(torch::kLong);
}

torch::Tensor SignedOneHot(const torch::Tensor& ids, int64_t num_classes) {
  return torch::one_hot(ids, num_classes).permute({0, 3, 1, 2}).to(torch::kFloat) * 2 - 1;
}

at::Generator MakeGenerator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

}  // namespace clickdiff::model
