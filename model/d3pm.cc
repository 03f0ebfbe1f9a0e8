#include "model/d3pm.h"

namespace clickdiff::model {
namespace {

torch::Tensor PerExample(const torch::Tensor& m, int64_t n) {
  return m.dim() == 2 ? m.unsqueeze(0).expand({n, m.size(0), m.size(1)}) : m;
}

}  // namespace

D3pmProcess::D3pmProcess(int64_t num_classes, const D3pmOptions& options)
    : num_classes_(num_classes), options_(options) {
  const auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  const int64_t T = options.num_timesteps;
  betas_ = torch::zeros({T + 1}, dbl);
  if (T > 1) {
    betas_.slice(0, 1) = torch::linspace(options.beta_start, options.beta_end, T, dbl);
  } else {
    betas_[1] = options.beta_end;
  }
  const auto eye = torch::eye(num_classes, dbl);
  const auto uniform = torch::full({num_classes, num_classes}, 1.0 / num_classes, dbl);
  step_ = torch::empty({T + 1, num_classes, num_classes}, dbl);
  cumulative_ = torch::empty({T + 1, num_classes, num_classes}, dbl);
  step_[0] = eye;
  cumulative_[0] = eye;
  for (int64_t t = 1; t <= T; ++t) {
    const double beta = betas_[t].item<double>();
    step_[t] = (1 - beta) * eye + beta * uniform;
    cumulative_[t] = torch::matmul(cumulative_[t - 1], step_[t]);
  }
}

torch::Tensor D3pmProcess::Transition(int64_t s, int64_t t) const {
  auto q = torch::eye(num_classes_, torch::TensorOptions().dtype(torch::kDouble));
  for (int64_t k = s + 1; k <= t; ++k) q = torch::matmul(q, step_[k]);
  return q;
}

torch::Tensor D3pmProcess::PriorProbs() const { return cumulative_[NumTimesteps()][0].clone(); }

torch::Tensor D3pmProcess::Posterior(const torch::Tensor& x_t, const torch::Tensor& x0_probs,
                                     const torch::Tensor& q_st, const torch::Tensor& qbar_s) {
  const int64_t n = x0_probs.size(0);
  const auto dtype = x0_probs.scalar_type();
  const auto q = PerExample(q_st.to(x0_probs.device(), dtype), n);
  const auto qbar = PerExample(qbar_s.to(x0_probs.device(), dtype), n);
  const auto onehot = torch::one_hot(x_t, q.size(1)).permute({0, 3, 1, 2}).to(dtype);
  // fact1[s] = Q_st[s, x_t]; fact2[s] = sum_j p(x0 = j) Qbar_s[j, s].
  const auto fact1 = torch::einsum("nij,njhw->nihw", {q, onehot});
  const auto fact2 = torch::einsum("nji,njhw->nihw", {qbar, x0_probs});
  const auto unnormalised = fact1 * fact2;
  return unnormalised / unnormalised.sum(1, true).clamp_min(1e-30);
}

NoisedBatch D3pmProcess::Noise(const torch::Tensor& x0, at::Generator& gen) const {
  const auto device = x0.device();
  NoisedBatch out;
  out.timesteps = RandTimesteps(x0.size(0), NumTimesteps(), gen, device);
  const auto qbar =
      cumulative_.to(device, torch::kFloat).index_select(0, out.timesteps);  // [B,K,K]
  // q(x_t | x0) rows, gathered per pixel: [B,K,H,W].
  const auto onehot = torch::one_hot(x0, num_classes_).permute({0, 3, 1, 2}).to(torch::kFloat);
  const auto probs = torch::einsum("bji,bjhw->bihw", {qbar, onehot});
  out.state = SampleCategorical(probs, gen);
  if (options_.prior_share > 0) {  // no extra draws otherwise: the random stream stays as it was
    const int64_t n = x0.size(0), h = x0.size(1), w = x0.size(2);
    const auto from_prior = RandUniform({n}, gen, device).lt(options_.prior_share);  // [B] bool
    const auto prior = PriorProbs().to(device, torch::kFloat).view({1, -1, 1, 1});
    const auto drawn = SampleCategorical(prior.expand({n, num_classes_, h, w}), gen);
    out.state = torch::where(from_prior.view({-1, 1, 1}), drawn, out.state);
    out.timesteps =
        torch::where(from_prior, torch::full_like(out.timesteps, NumTimesteps()), out.timesteps);
  }
  out.x_t = SignedOneHot(out.state, num_classes_);
  out.network_time = NetworkTime(out.timesteps);
  return out;
}

torch::Tensor D3pmProcess::AuxiliaryLoss(const torch::Tensor& logits, const NoisedBatch& noised,
                                         const torch::Tensor& x0,
                                         const torch::Tensor& weights) const {
  const auto device = logits.device();
  const auto t = noised.timesteps;
  const auto q_st = step_.to(device, torch::kFloat).index_select(0, t);
  const auto qbar_s = cumulative_.to(device, torch::kFloat).index_select(0, t - 1);
  const auto x0_onehot = torch::one_hot(x0, num_classes_).permute({0, 3, 1, 2}).to(torch::kFloat);
  const auto q_true = Posterior(noised.state, x0_onehot, q_st, qbar_s);
  const auto p_model = Posterior(noised.state, torch::softmax(logits, 1), q_st, qbar_s);
  const auto log_p = p_model.clamp_min(1e-12).log();
  // t >= 2: KL(q || p); t = 1 (Qbar_0 = I, q_true is the one-hot of x0): -log p(x0 | x1).
  const auto kl = (q_true * (q_true.clamp_min(1e-12).log() - log_p)).sum(1);
  const auto nll = -log_p.gather(1, x0.unsqueeze(1)).squeeze(1);
  const auto first = (t == 1).view({-1, 1, 1}).expand_as(kl);
  return (weights * torch::where(first, nll, kl)).mean();
}

torch::Tensor D3pmProcess::Sample(const DenoiseFn& denoise, int64_t n, int64_t height,
                                  int64_t width, int64_t steps, at::Generator& gen,
                                  torch::Device device) const {
  const auto prior = PriorProbs().to(device, torch::kFloat).view({1, -1, 1, 1});
  auto x = SampleCategorical(prior.expand({n, num_classes_, height, width}), gen);
  const auto times = RespacedTimesteps(NumTimesteps(), steps);
  for (size_t i = 0; i + 1 < times.size(); ++i) {
    const int64_t t = times[i], s = times[i + 1];
    const auto t_net =
        NetworkTime(torch::full({n}, t, torch::TensorOptions().dtype(torch::kLong))).to(device);
    const auto x0_probs = torch::softmax(denoise(SignedOneHot(x, num_classes_), t_net), 1);
    const auto probs = Posterior(x, x0_probs, Transition(s, t), cumulative_[s]);
    x = SampleCategorical(probs, gen);
  }
  return x;
}

std::vector<std::pair<std::string, torch::Tensor>> D3pmProcess::ScheduleTensors() const {
  return {{"betas", betas_}, {"cumulative", cumulative_}};
}

}  // namespace clickdiff::model
