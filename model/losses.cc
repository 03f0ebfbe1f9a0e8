#include "model/losses.h"

namespace clickdiff::model {

torch::Tensor PixelWeights(const torch::Tensor& targets, const torch::Tensor& known,
                           const torch::Tensor& dense, const LossOptions& options) {
  const auto certain = (targets > 0).logical_or(known.to(torch::kBool));
  auto weights = torch::where(
      certain, torch::full({}, options.focal_alpha, targets.options().dtype(torch::kFloat)),
      torch::full({}, 1.0 - options.focal_alpha, targets.options().dtype(torch::kFloat)));
  const auto dense_mask = dense.to(torch::kBool).view({-1, 1, 1}).expand_as(weights);
  return torch::where(dense_mask, torch::ones_like(weights), weights);
}

torch::Tensor FocalGammas(const torch::Tensor& dense, const LossOptions& options) {
  const auto float_options = dense.options().dtype(torch::kFloat);
  return torch::where(dense.to(torch::kBool), torch::full({}, options.dense_gamma, float_options),
                      torch::full({}, options.focal_gamma, float_options));
}

torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                        const torch::Tensor& weights, const torch::Tensor& gammas) {
  const auto log_p = torch::log_softmax(logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1);
  const auto p = log_p.exp();
  const auto focus = torch::pow((1 - p).clamp_min(1e-12), gammas.view({-1, 1, 1}));
  return -(weights * focus * log_p).mean();
}

}  // namespace clickdiff::model
