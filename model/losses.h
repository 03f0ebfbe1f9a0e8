// model/losses.h — the supervision losses shared by every method (paper 000's weighted focal loss).
//
// Click maps (paper 000): the target is background everywhere except at clicked pixels. Every pixel
// is scored; pixels of a foreground class and negative clicks (certain background) weigh
// `focal_alpha`, all other (unknown, assumed background) pixels weigh 1 - focal_alpha. With
// alpha = 0.999 a single click weighs as much as ~1000 unknown pixels, which is what keeps the
// prediction from collapsing to background.
// Dense masks are full supervision: every pixel is known, so they use plain cross-entropy
// (gamma 0, weight 1 on every pixel), which keeps the predicted probabilities calibrated.
// Pure functions; thread-safe.
#pragma once

#include <torch/torch.h>

namespace clickdiff::model {

struct LossOptions {
  double focal_gamma = 2.0;    // focusing parameter for click maps
  double focal_alpha = 0.999;  // weight of foreground / negative-click pixels in click maps
  double dense_gamma = 0.0;    // focusing parameter for dense masks (0: cross-entropy)
  double vlb_weight = 0.01;    // d3pm: weight of the variational (KL) term
  double mse_weight = 0.0;     // gaussian_x0: weight of the paper's ||x0 - x0_hat||^2 term
};

// Per-pixel weights [B,H,W] float. targets [B,H,W] int64; known [B,H,W] (bool/float: pixels that
// carry a certain label, i.e. positive and negative clicks); dense [B] bool.
torch::Tensor PixelWeights(const torch::Tensor& targets, const torch::Tensor& known,
                           const torch::Tensor& dense, const LossOptions& options);

// Per-example focusing parameter [B] float: focal_gamma for click maps, dense_gamma for dense.
torch::Tensor FocalGammas(const torch::Tensor& dense, const LossOptions& options);

// Mean over all pixels of -w (1 - p_y)^gamma log p_y, p = softmax(logits).
// logits [B,K,H,W]; targets [B,H,W] int64; weights [B,H,W]; gammas [B].
torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                        const torch::Tensor& weights, const torch::Tensor& gammas);

}  // namespace clickdiff::model
