// model/losses.h — the supervision losses shared by every method, applied to the network's
// per-pixel class prediction (x0-hat for the diffusion methods). LossOptions::kind chooses:
//
//  - kFocal (paper 000): the target is background everywhere except at clicked pixels (or, for a
//    clicked image with a served mask, that mask's class: model::LabelUnclicked). Every pixel is
//    scored; the known pixels (positive and negative clicks) weigh `focal_alpha`, all others
//    (unknown: assumed background, or the mask's class) weigh 1 - focal_alpha. With alpha = 0.999
//    a single click weighs as much as ~1000 unknown pixels.
//  - kPce (paper 001): partial cross-entropy on labelled pixels only (positive and negative clicks,
//    scribbles, every pixel of a dense or pseudo-label mask); unlabelled pixels are unknown, not
//    background. On positive clicks alone it predicts everything as object: it wants a term over
//    the unlabelled pixels beside it.
//  - kPceMs: pCE + ms_weight * Mumford-Shah fidelity (each class region close to its own mean
//    intensity: a soft K-means of the image under the prediction) + tv_weight * total variation.
//  - kPceCv: pCE + cv_weight * contrastive variance loss (PSCV, eqs. 4-8: variance maps
//    z_k = Y_k * (I - c_k)^2 compared by cosine similarity at temperature cv_temperature; the
//    positive of (image n, class k) is class k in another image of the batch, the negatives every
//    other class in every other image) + tv_weight * total variation.
// Dense masks under kFocal use plain cross-entropy (gamma 0, weight `dense_weight` on every pixel),
// and so do partial label maps (scribbles), weighed as click maps are (PixelWeights). The partial
// kinds score a partial label map's labelled pixels alone.
// Pure functions (ContrastiveVarianceLoss draws from the generator it is given); thread-safe.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include "model/choices.h"

namespace clickdiff::model {

struct LossOptions {
  LossKind kind = LossKind::kFocal;
  double focal_gamma = 2.0;    // kFocal: focusing parameter for click maps
  double focal_alpha = 0.999;  // kFocal: weight of known (clicked) pixels
  double dense_gamma = 0.0;    // kFocal: focusing parameter for dense masks (0: cross-entropy)
  // kFocal: the weight of a dense mask's pixel. At 1 a dense image (R^2) outweighs an image with k
  // clicks (k alpha + (R^2 - k)(1 - alpha)) 160-800-fold at R = 64, and Adam's step follows the
  // largest gradients; 1 - alpha makes the two about equal.
  double dense_weight = 1.0;
  double ms_weight = 1.0;        // kPceMs: weight of the Mumford-Shah fidelity term
  double cv_weight = 0.3;        // kPceCv: lambda_cv (paper 001: 0.3 on Synapse)
  double cv_temperature = 0.07;  // kPceCv: tau
  double tv_weight = 0.01;       // kPceMs, kPceCv: weight of the total variation of Y
  double vlb_weight = 0.01;      // d3pm: weight of the variational (KL) term
  double mse_weight = 0.0;       // gaussian_x0: weight of the paper's ||x0 - x0_hat||^2 term
};

// kFocal per-pixel weights [B,H,W] float: focal_alpha on the known pixels, 1 - focal_alpha on the
// others whatever their target (background, or a mask's class: model::LabelUnclicked), and
// dense_weight everywhere in a dense example. A partial example (scribbles) weighs its pixels as a
// click map does, scaled so that it counts as much as a dense mask in total (dense_weight x H W):
// its unknown pixels are a weak background prior, 1 - focal_alpha against focal_alpha, as a click
// map's are (at weight 0 every structure spread over the unmarked background on ACDC:
// docs/experiments.md, "Scribbles, dense masks and clicks on ACDC"). targets [B,H,W] int64;
// known [B,H,W] (bool/float: pixels that carry a certain label, i.e. positive and negative
// clicks, a scribble's pixels); dense, partial [B] bool.
torch::Tensor PixelWeights(const torch::Tensor& targets, const torch::Tensor& known,
                           const torch::Tensor& dense, const torch::Tensor& partial,
                           const LossOptions& options);

// Per-example focusing parameter [B] float: focal_gamma for click maps, dense_gamma for dense
// masks and partial label maps (`labels`: dense or partial, [B] bool).
torch::Tensor FocalGammas(const torch::Tensor& labels, const LossOptions& options);

// Mean over all pixels of -w (1 - p_y)^gamma log p_y, p = softmax(logits).
// logits [B,K,H,W]; targets [B,H,W] int64; weights [B,H,W]; gammas [B].
torch::Tensor FocalLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                        const torch::Tensor& weights, const torch::Tensor& gammas);

// Sum over labelled pixels of -w_n log p_y, divided by the number of labelled pixels (0 when none
// is labelled). logits [B,K,H,W]; targets [B,H,W] int64; labelled [B,H,W] bool; example_weights
// [B] float (w_n).
torch::Tensor PartialCrossEntropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                  const torch::Tensor& labelled,
                                  const torch::Tensor& example_weights);

// Variance maps z [B,K,H,W]: z_k(r) = sum_c (I_c(r) - c_k,c)^2 Y_k(r), with c_k the mean of image
// channel c under the soft region Y_k (paper 001, eqs. 4-5). probs [B,K,H,W] (rows sum to 1);
// image [B,C,H,W].
torch::Tensor VarianceMaps(const torch::Tensor& probs, const torch::Tensor& image);

// Mumford-Shah fidelity: the mean over images and pixels of sum_k z_k.
torch::Tensor MumfordShahLoss(const torch::Tensor& probs, const torch::Tensor& image);

// Total variation: the mean over images and pixels of sum_k |dY_k/dx| + |dY_k/dy| (forward
// differences).
torch::Tensor TotalVariation(const torch::Tensor& probs);

// PSCV's contrastive term, averaged over the anchors (n, k) with k present in image n and in at
// least one other image (0 when there is none). present [B,K] bool: the classes image n holds
// (background always). The positive of each anchor is drawn uniformly from the other images that
// hold k; negatives are (i, j) with i != n, j != k and j present in i.
torch::Tensor ContrastiveVarianceLoss(const torch::Tensor& probs, const torch::Tensor& image,
                                      const torch::Tensor& present, double temperature,
                                      at::Generator& gen);

}  // namespace clickdiff::model
