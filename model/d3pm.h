// model/d3pm.h — categorical (D3PM) diffusion over K label classes, as in paper 000.
//
// Forward process: uniform transitions Q_t = (1 - beta_t) I + beta_t / K 11^T with a linear beta
// schedule (1e-4 .. 0.02 over T = 200 by default, paper 000's; the product's configuration ends at
// 0.05, see below), built in double precision; the cumulative
// matrices Qbar_t = Q_1 ... Q_t give q(x_t | x0) = Cat(x0 Qbar_t) in closed form.
// Network: x0-parameterised. It sees x_t as a {-1,1} one-hot and returns logits of x0; the reverse
// step marginalises over x0 as in D3PM (Austin et al., eq. 4):
//   p(x_s | x_t) ∝ sum_x0 q(x_t | x_s) q(x_s | x0) p(x0 | x_t)
//               = [x_t Q_{s->t}^T] ⊙ [p(x0 | x_t) Qbar_s],   Q_{s->t} = Q_{s+1} ... Q_t.
// With s = t - 1 this is the usual posterior; with fewer sampling steps the same formula runs on a
// respaced grid of timesteps (RespacedTimesteps), which is exact for the forward process because
// Q_{s->t} is the product of the skipped one-step matrices.
// Prior: x_T is drawn from q(x_T | x0 = background) = row 0 of Qbar_T. Under paper 000's schedule
// that is far from uniform (for K = 2, alpha_bar_T ~ 0.13) and, a click map being background at
// all but a handful of pixels, the marginal of its training data to within a few clicks per image;
// at beta_end 0.05 it is nearly uniform (0.503 for K = 2), which dense targets need (below).
// The schedule's end: at beta_end 0.02 x_T keeps 13% of x0, and every x_t more, which a network
// trained on dense label maps (dense masks, pseudo-labels, clicks simulated on them) can read back
// by smoothing x_t; it then learns to clean x_t rather than read the image, and the sampler, whose
// x_T holds nothing of the object, draws noise (measured: a generated-data seed stalled at loss
// 0.03 and Dice 0.435 after 1200 steps). At 0.05 (T = 200) x_T keeps 0.6% and the same seed
// reaches 0.94.
// Training from the prior (prior_share): with that probability a training example is noised not by
// q(x_T | x0) but replaced by a draw from the prior at t = T, independent of its label, which is
// exactly the state the sampler's first step sees; a remedy for the same trap that keeps the
// schedule (at 0.02 it lifted that seed to 0.59, less than the schedule's end did). Click maps
// (paper 000's setting) carry almost nothing in x_t, so the trap opens with dense targets only.
// Loss term (AuxiliaryLoss): the variational bound's KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for
// t >= 2 and -log p(x0 | x1) for t = 1, per pixel, with the same per-pixel weights as the focal
// loss (so a click weighs alpha and an unknown pixel 1 - alpha), averaged over pixels; the
// Segmenter adds it with LossOptions::vlb_weight (default 0.01) to the focal loss on x0_hat.
//
// Immutable after construction; thread-safe.
#pragma once

#include "model/diffusion.h"

namespace clickdiff::model {

struct D3pmOptions {
  int64_t num_timesteps = 200;
  double beta_start = 1e-4;
  double beta_end = 0.02;
  double prior_share = 0;  // share of training examples drawn from the prior at t = T, in [0, 1]
};

class D3pmProcess : public DiffusionProcess {
 public:
  // Preconditions (checked by the Segmenter): num_classes >= 2, num_timesteps >= 1,
  // 0 <= beta_start <= beta_end < 1.
  D3pmProcess(int64_t num_classes, const D3pmOptions& options);

  std::string Name() const override { return "d3pm"; }
  int64_t NumClasses() const override { return num_classes_; }
  int64_t NumTimesteps() const override { return options_.num_timesteps; }

  NoisedBatch Noise(const torch::Tensor& x0, at::Generator& gen) const override;
  torch::Tensor AuxiliaryLoss(const torch::Tensor& logits, const NoisedBatch& noised,
                              const torch::Tensor& x0, const torch::Tensor& weights) const override;
  torch::Tensor Sample(const DenoiseFn& denoise, int64_t n, int64_t height, int64_t width,
                       int64_t steps, at::Generator& gen, torch::Device device) const override;
  std::vector<std::pair<std::string, torch::Tensor>> ScheduleTensors() const override;

  // beta_t, t = 0..T (beta_0 = 0), double.
  const torch::Tensor& betas() const { return betas_; }
  // Q_t, [T+1,K,K] double, Q_0 = I. Row i is q(x_t = . | x_{t-1} = i).
  const torch::Tensor& step_matrices() const { return step_; }
  // Qbar_t, [T+1,K,K] double, Qbar_0 = I. Row i is q(x_t = . | x0 = i).
  const torch::Tensor& cumulative_matrices() const { return cumulative_; }
  // Q_{s->t} = Q_{s+1} ... Q_t, [K,K] double; 0 <= s <= t <= T.
  torch::Tensor Transition(int64_t s, int64_t t) const;
  // The distribution x_T is drawn from, [K] double: row 0 of Qbar_T.
  torch::Tensor PriorProbs() const;

  // p(x_s | x_t) for x_t class ids [n,H,W] and x0 probabilities [n,K,H,W]:
  // [x_t Q_st^T] ⊙ [x0_probs Qbar_s], normalised over classes. q_st and qbar_s are [K,K] or
  // [n,K,K] (per example), any floating dtype. Returns [n,K,H,W] in x0_probs' dtype.
  static torch::Tensor Posterior(const torch::Tensor& x_t, const torch::Tensor& x0_probs,
                                 const torch::Tensor& q_st, const torch::Tensor& qbar_s);

 private:
  int64_t num_classes_;
  D3pmOptions options_;
  torch::Tensor betas_, step_, cumulative_;
};

}  // namespace clickdiff::model
