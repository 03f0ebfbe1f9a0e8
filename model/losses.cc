#include "model/losses.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "model/diffusion.h"

namespace clickdiff::model {

torch::Tensor PixelWeights(const torch::Tensor& targets, const torch::Tensor& known,
                           const torch::Tensor& dense, const torch::Tensor& partial,
                           const LossOptions& options) {
  const auto certain = known.to(torch::kBool);
  const auto float_options = targets.options().dtype(torch::kFloat);
  auto weights = torch::where(certain, torch::full({}, options.focal_alpha, float_options),
                              torch::full({}, 1.0 - options.focal_alpha, float_options));
  // A partial example's weights scaled to a dense example's total.
  const auto pixels = static_cast<double>(certain.size(1) * certain.size(2));
  const auto scale = options.dense_weight * pixels / weights.flatten(1).sum(1).clamp_min(1e-12);
  weights = torch::where(partial.to(torch::kBool).view({-1, 1, 1}),
                         weights * scale.view({-1, 1, 1}), weights);
  const auto dense_mask = dense.to(torch::kBool).view({-1, 1, 1}).expand_as(weights);
  return torch::where(dense_mask, torch::full_like(weights, options.dense_weight), weights);
}

torch::Tensor FocalGammas(const torch::Tensor& labels, const LossOptions& options) {
  const auto float_options = labels.options().dtype(torch::kFloat);
  return torch::where(labels.to(torch::kBool), torch::full({}, options.dense_gamma, float_options),
                      torch::full({}, options.focal_gamma, float_options));
}

torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                        const torch::Tensor& weights, const torch::Tensor& gammas) {
  const auto log_p = torch::log_softmax(logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1);
  const auto p = log_p.exp();
  const auto focus = torch::pow((1 - p).clamp_min(1e-12), gammas.view({-1, 1, 1}));
  return -(weights * focus * log_p).mean();
}

torch::Tensor PartialCrossEntropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                  const torch::Tensor& labelled,
                                  const torch::Tensor& example_weights) {
  const auto log_p = torch::log_softmax(logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1);
  const auto mask = labelled.to(torch::kBool);
  const auto weights = torch::where(mask, example_weights.to(log_p.dtype()).view({-1, 1, 1}),
                                    torch::zeros({}, log_p.options()));
  return -(weights * log_p).sum() / mask.sum().clamp_min(1).to(log_p.dtype());
}

torch::Tensor VarianceMaps(const torch::Tensor& probs, const torch::Tensor& image) {
  // c [B,K,C]: the mean of each image channel under each soft region.
  const auto mass = probs.sum({2, 3}).clamp_min(1e-6);  // [B,K]
  const auto centres = torch::einsum("bkhw,bchw->bkc", {probs, image}) / mass.unsqueeze(-1);
  // (I_c - c_k,c)^2 summed over channels: [B,K,H,W].
  const auto diff = image.unsqueeze(1) - centres.unsqueeze(-1).unsqueeze(-1);  // [B,K,C,H,W]
  return diff.pow(2).sum(2) * probs;
}

torch::Tensor MumfordShahLoss(const torch::Tensor& probs, const torch::Tensor& image) {
  return VarianceMaps(probs, image).sum(1).mean();
}

torch::Tensor TotalVariation(const torch::Tensor& probs) {
  const int64_t h = probs.size(2), w = probs.size(3);
  const auto dy = (probs.slice(2, 1, h) - probs.slice(2, 0, h - 1)).abs().sum(1);  // [B,H-1,W]
  const auto dx = (probs.slice(3, 1, w) - probs.slice(3, 0, w - 1)).abs().sum(1);  // [B,H,W-1]
  return (dy.sum() + dx.sum()) / static_cast<double>(probs.size(0) * h * w);
}

torch::Tensor ContrastiveVarianceLoss(const torch::Tensor& probs, const torch::Tensor& image,
                                      const torch::Tensor& present, double temperature,
                                      at::Generator& gen) {
  const int64_t b = probs.size(0), k = probs.size(1);
  const auto z = torch::nn::functional::normalize(
      VarianceMaps(probs, image).reshape({b * k, -1}),
      torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-8));
  const auto similarity = torch::matmul(z, z.t()) / temperature;  // [BK,BK], row n*K+k
  const auto holds = present.to(torch::kCPU, torch::kBool).contiguous();
  const auto* has = holds.data_ptr<bool>();
  const auto draws = RandUniform({b * k}, gen, probs.device()).to(torch::kCPU, torch::kFloat);
  const auto draw = draws.accessor<float, 1>();
  std::vector<int64_t> anchors, positives;
  std::vector<uint8_t> negatives(static_cast<size_t>(b * k * b * k), 0);
  for (int64_t n = 0; n < b; ++n) {
    for (int64_t c = 0; c < k; ++c) {
      if (!has[n * k + c]) continue;
      std::vector<int64_t> others;
      for (int64_t m = 0; m < b; ++m) {
        if (m != n && has[m * k + c]) others.push_back(m);
      }
      if (others.empty()) continue;
      const auto pick = std::min<int64_t>(
          static_cast<int64_t>(draw[n * k + c] * static_cast<float>(others.size())),
          static_cast<int64_t>(others.size()) - 1);
      const int64_t row = static_cast<int64_t>(anchors.size());
      anchors.push_back(n * k + c);
      positives.push_back(others[static_cast<size_t>(pick)] * k + c);
      for (int64_t i = 0; i < b; ++i) {
        for (int64_t j = 0; j < k; ++j) {
          if (i != n && j != c && has[i * k + j])
            negatives[static_cast<size_t>(row * b * k + i * k + j)] = 1;
        }
      }
    }
  }
  if (anchors.empty()) return probs.sum() * 0;
  const int64_t a = static_cast<int64_t>(anchors.size());
  const auto device = probs.device();
  const auto rows = similarity.index_select(0, torch::tensor(anchors).to(device));  // [A,BK]
  const auto positive = rows.gather(1, torch::tensor(positives).to(device).view({a, 1}));
  const auto negative_mask = torch::from_blob(negatives.data(), {b * k, b * k}, torch::kUInt8)
                                 .slice(0, 0, a)
                                 .to(device, torch::kBool);
  const auto negative =
      rows.masked_fill(negative_mask.logical_not(), -std::numeric_limits<float>::infinity());
  const auto all = torch::cat({positive, negative}, 1);
  return (torch::logsumexp(all, 1) - positive.squeeze(1)).mean();
}

}  // namespace clickdiff::model
