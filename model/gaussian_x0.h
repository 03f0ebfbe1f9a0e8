// model/gaussian_x0.h — few-step Gaussian label diffusion with x0 prediction and a random latent,
// as in cDAL (paper 003).
//
// Labels are one-hot maps scaled to {-1, 1} ([n,K,H,W]). Variance-preserving schedule with
//   beta_t = 1 - exp(-beta_min / T - (beta_max - beta_min) (2t - 1) / (2 T^2)),  t = 1..T,
// beta_min 0.1, beta_max 20, T = 4 by default (2..4 in the paper); alpha_bar_t = prod (1 - beta).
// q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I).
// The network predicts x0_hat = 2 softmax(logits) - 1, i.e. the expected {-1,1} one-hot under the
// predicted class distribution; for K = 2 this is exactly tanh((l_1 - l_0) / 2) per channel, the
// paper's tanh output, and for K > 2 it keeps the channels on the simplex so that the focal loss
// and argmax decoding see one consistent class distribution. The Segmenter draws a new latent z
// for every denoiser call (the DenoiseFn), so each reverse step samples from a multimodal
// p(x0 | x_t).
// Reverse step (posterior sampling): x_s ~ q(x_s | x_t, x0_hat) with, for a ratio
// a = alpha_bar_t / alpha_bar_s and b = 1 - a,
//   mean = sqrt(alpha_bar_s) b / (1 - alpha_bar_t) x0_hat + sqrt(a) (1 - alpha_bar_s) / (1 -
//   alpha_bar_t) x_t,   variance = (1 - alpha_bar_s) / (1 - alpha_bar_t) b;
// s = t - 1 gives the paper's coefficients. x_T ~ N(0, I). The final x_0 (= x0_hat at the last
// step) is decoded by argmax over classes.
// AuxiliaryLoss: the paper's ||x0 - x0_hat||^2 per pixel (summed over channels), weighted like the
// focal loss; off by default (LossOptions::mse_weight = 0) because with click maps the focal loss
// is the supervision that works.
//
// Immutable after construction; thread-safe.
#pragma once

#include "model/diffusion.h"

namespace clickdiff::model {

struct GaussianX0Options {
  int64_t num_timesteps = 4;
  double beta_min = 0.1;
  double beta_max = 20.0;
  int64_t latent_dim = 32;  // size of z; the U-Net's mapping network takes it
};

class GaussianX0Process : public DiffusionProcess {
 public:
  struct Coefficients {
    double x0 = 0;        // multiplies x0_hat
    double xt = 0;        // multiplies x_t
    double variance = 0;  // of the added noise
  };

  // Preconditions (checked by the Segmenter): num_classes >= 2, num_timesteps >= 1,
  // 0 < beta_min <= beta_max.
  GaussianX0Process(int64_t num_classes, const GaussianX0Options& options);

  std::string Name() const override { return "gaussian_x0"; }
  int64_t NumClasses() const override { return num_classes_; }
  int64_t NumTimesteps() const override { return options_.num_timesteps; }

  NoisedBatch Noise(const torch::Tensor& x0, at::Generator& gen) const override;
  torch::Tensor AuxiliaryLoss(const torch::Tensor& logits, const NoisedBatch& noised,
                              const torch::Tensor& x0, const torch::Tensor& weights) const override;
  torch::Tensor Sample(const DenoiseFn& denoise, int64_t n, int64_t height, int64_t width,
                       int64_t steps, at::Generator& gen, torch::Device device) const override;
  std::vector<std::pair<std::string, torch::Tensor>> ScheduleTensors() const override;

  // beta_t and alpha_bar_t for t = 0..T (beta_0 = 0, alpha_bar_0 = 1), double.
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  // Posterior q(x_s | x_t, x0) coefficients, 0 <= s < t <= T.
  Coefficients Posterior(int64_t s, int64_t t) const;

 private:
  int64_t num_classes_;
  GaussianX0Options options_;
  torch::Tensor betas_, alphas_cumprod_;
};

}  // namespace clickdiff::model
