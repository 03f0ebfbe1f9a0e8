// model/unet.h — the conditional U-Net shared by every segmentation method.
//
// Two parts, so a sampler can pay for the image once:
//   * ImageEncoder: depends only on the image. Returns one feature map per U-Net level, already
//     projected to the denoiser's width at that level.
//   * the denoiser (UNetImpl itself): takes the noisy label x_t [B,K,H,W], the timestep t [B]
//     (a float, any scale; the sinusoidal embedding expects roughly 0..1000), an optional latent
//     z [B,latent_dim] and the encoder's features, and returns class logits [B,K,H,W].
// The time embedding (and, when latent_dim > 0, the mapping network's output for z) modulates
// every residual block through an adaptive GroupNorm scale/shift. Features may have batch 1 while
// x_t has batch n: they broadcast, so N samples of one image share one encoding.
//
// Ownership: modules live in shared_ptr holders (TORCH_MODULE). Thread-safety: like any
// torch::nn::Module, concurrent forward passes under InferenceMode are fine; training is not.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace clickdiff::model {

// Defaults (widths 8/16, 4 levels at 64x64) were chosen by measurement on this 2-core CPU
// (ops/bench/accuracy_experiment): they train at ~3-4 steps/s (batch 8, one thread) and reach
// test Dice 0.84-0.91 on the generated binary-organ task in 90 s; doubling both widths cost ~3x
// the time without a measurable gain in that budget. The denoiser runs N x T times per image, so
// it is kept much thinner than the encoder, which runs once per image.
struct UNetOptions {
  int64_t image_channels = 1;     // channels of the conditioning image
  int64_t guidance_channels = 0;  // click maps after the image's channels (model/click_guidance.h)
  int64_t label_channels = 2;     // K: channels of x_t and of the output logits
  int64_t levels = 4;             // resolutions: R, R/2, ..., R/2^(levels-1)
  int64_t base_width = 8;         // denoiser channels at full resolution
  int64_t encoder_width = 16;     // image encoder channels at full resolution
  int64_t max_width_multiplier = 4;  // width at level l: base * min(2^l, this)
  int64_t time_embedding_dim = 64;
  int64_t latent_dim = 0;  // 0: no latent path; >0: mapping network z -> adaptive GroupNorm
  int64_t groups = 8;      // GroupNorm groups (reduced to divide the channel count)

  // Denoiser / encoder channel count at level `level`.
  int64_t Width(int64_t level) const;
  int64_t EncoderWidth(int64_t level) const;
};

// Residual block: GroupNorm-SiLU-conv3x3, adaptive GroupNorm from the embedding (optional),
// SiLU-conv3x3, plus a 1x1 skip when the width changes.
class ResBlockImpl : public torch::nn::Module {
 public:
  // emb_dim 0: no embedding input.
  ResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t emb_dim, int64_t groups);
  // x [B,C,H,W]; emb [B,emb_dim] or an undefined tensor when emb_dim == 0.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);

 private:
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  torch::nn::Linear emb_proj_{nullptr};
};
TORCH_MODULE(ResBlock);

// The image-conditioning encoder: depends only on the image.
class ImageEncoderImpl : public torch::nn::Module {
 public:
  explicit ImageEncoderImpl(const UNetOptions& options);
  // images [B,image_channels + guidance_channels,R,R] -> `levels` maps, map l is [B, Width(l),
  // R/2^l, R/2^l]. R must be divisible by 2^(levels-1).
  std::vector<torch::Tensor> forward(const torch::Tensor& images);

 private:
  UNetOptions options_;
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::ModuleList blocks_, projections_, downsamples_;
  ResBlock bottom_{nullptr};
};
TORCH_MODULE(ImageEncoder);

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& options);

  // Runs the image encoder only; reuse its result for every sample and step of that image.
  std::vector<torch::Tensor> Encode(const torch::Tensor& images);

  // One denoiser evaluation. x_t [n,K,R,R]; t [n] float; z [n,latent_dim] (ignored and may be
  // undefined when latent_dim == 0); features from Encode with batch n or 1. Returns logits
  // [n,K,R,R].
  torch::Tensor Denoise(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& z,
                        const std::vector<torch::Tensor>& features);

  // Encode + Denoise, for training.
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& x_t,
                        const torch::Tensor& t, const torch::Tensor& z);

  const UNetOptions& options() const { return options_; }

 private:
  torch::Tensor Embedding(const torch::Tensor& t, const torch::Tensor& z);

  UNetOptions options_;
  ImageEncoder encoder_{nullptr};
  torch::nn::Sequential time_mlp_{nullptr}, mapping_{nullptr};
  torch::nn::Conv2d stem_{nullptr}, out_conv_{nullptr};
  torch::nn::GroupNorm out_norm_{nullptr};
  torch::nn::ModuleList down_blocks_, downsamples_, up_convs_, up_blocks_;
  ResBlock mid_{nullptr};
};
TORCH_MODULE(UNet);

// Sinusoidal embedding of t [n] float -> [n, dim] (dim even).
torch::Tensor SinusoidalEmbedding(const torch::Tensor& t, int64_t dim);

}  // namespace clickdiff::model
