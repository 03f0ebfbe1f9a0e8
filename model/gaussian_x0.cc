#include "model/gaussian_x0.h"

#include <cmath>

namespace clickdiff::model {

GaussianX0Process::GaussianX0Process(int64_t num_classes, const GaussianX0Options& options)
    : num_classes_(num_classes), options_(options) {
  const int64_t T = options.num_timesteps;
  betas_ = torch::zeros({T + 1}, torch::TensorOptions().dtype(torch::kDouble));
  alphas_cumprod_ = torch::ones({T + 1}, torch::TensorOptions().dtype(torch::kDouble));
  auto beta = betas_.accessor<double, 1>();
  auto alpha_bar = alphas_cumprod_.accessor<double, 1>();
  const double t_total = static_cast<double>(T);
  for (int64_t t = 1; t <= T; ++t) {
    const double exponent = options.beta_min / t_total + 0.5 *
                                                             (options.beta_max - options.beta_min) *
                                                             (2.0 * t - 1.0) / (t_total * t_total);
    beta[t] = 1.0 - std::exp(-exponent);
    alpha_bar[t] = alpha_bar[t - 1] * (1.0 - beta[t]);
  }
}

GaussianX0Process::Coefficients GaussianX0Process::Posterior(int64_t s, int64_t t) const {
  const double abar_t = alphas_cumprod_[t].item<double>();
  const double abar_s = alphas_cumprod_[s].item<double>();
  const double a = abar_t / abar_s;
  const double b = 1.0 - a;
  Coefficients c;
  c.x0 = std::sqrt(abar_s) * b / (1.0 - abar_t);
  c.xt = std::sqrt(a) * (1.0 - abar_s) / (1.0 - abar_t);
  c.variance = (1.0 - abar_s) / (1.0 - abar_t) * b;
  return c;
}

NoisedBatch GaussianX0Process::Noise(const torch::Tensor& x0, at::Generator& gen) const {
  const auto device = x0.device();
  NoisedBatch out;
  out.timesteps = RandTimesteps(x0.size(0), NumTimesteps(), gen, device);
  const auto abar =
      alphas_cumprod_.to(device, torch::kFloat).index_select(0, out.timesteps).view({-1, 1, 1, 1});
  const auto clean = SignedOneHot(x0, num_classes_);
  const auto noise = RandNormal(clean.sizes(), gen, device);
  out.x_t = abar.sqrt() * clean + (1 - abar).sqrt() * noise;
  out.network_time = NetworkTime(out.timesteps);
  return out;
}

torch::Tensor GaussianX0Process::AuxiliaryLoss(const torch::Tensor& logits,
                                               const NoisedBatch& /*noised*/,
                                               const torch::Tensor& x0,
                                               const torch::Tensor& weights) const {
  const auto x0_hat = 2 * torch::softmax(logits, 1) - 1;
  return (weights * (x0_hat - SignedOneHot(x0, num_classes_)).pow(2).sum(1)).mean();
}

torch::Tensor GaussianX0Process::Sample(const DenoiseFn& denoise, int64_t n, int64_t height,
                                        int64_t width, int64_t steps, at::Generator& gen,
                                        torch::Device device) const {
  auto x = RandNormal({n, num_classes_, height, width}, gen, device);
  const auto times = RespacedTimesteps(NumTimesteps(), steps);
  for (size_t i = 0; i + 1 < times.size(); ++i) {
    const int64_t t = times[i], s = times[i + 1];
    const auto t_net =
        NetworkTime(torch::full({n}, t, torch::TensorOptions().dtype(torch::kLong))).to(device);
    const auto x0_hat = 2 * torch::softmax(denoise(x, t_net), 1) - 1;
    const auto c = Posterior(s, t);
    x = c.x0 * x0_hat + c.xt * x;
    if (s > 0) x = x + std::sqrt(c.variance) * RandNormal(x.sizes(), gen, device);
  }
  return x.argmax(1);
}

std::vector<std::pair<std::string, torch::Tensor>> GaussianX0Process::ScheduleTensors() const {
  return {{"betas", betas_}, {"alphas_cumprod", alphas_cumprod_}};
}

}  // namespace clickdiff::model
