#include "model/unet.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace clickdiff::model {
namespace {

namespace nn = torch::nn;

int64_t GroupsFor(int64_t channels, int64_t groups) { return std::gcd(channels, groups); }

nn::GroupNorm Norm(int64_t channels, int64_t groups) {
  return nn::GroupNorm(nn::GroupNormOptions(GroupsFor(channels, groups), channels));
}

nn::Conv2d Conv3(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

nn::Conv2d Conv1(int64_t in, int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 1)); }

}  // namespace

int64_t UNetOptions::Width(int64_t level) const {
  return base_width * std::min<int64_t>(int64_t{1} << level, max_width_multiplier);
}

int64_t UNetOptions::EncoderWidth(int64_t level) const {
  return encoder_width * std::min<int64_t>(int64_t{1} << level, max_width_multiplier);
}

torch::Tensor SinusoidalEmbedding(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  auto freqs =
      torch::exp(-std::log(10000.0) * torch::arange(half, t.options().dtype(torch::kFloat)) / half);
  auto args = t.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::sin(args), torch::cos(args)}, 1);
}

ResBlockImpl::ResBlockImpl(int64_t in_channels, int64_t out_channels, int64_t emb_dim,
                           int64_t groups) {
  norm1_ = register_module("norm1", Norm(in_channels, groups));
  conv1_ = register_module("conv1", Conv3(in_channels, out_channels));
  norm2_ = register_module("norm2", Norm(out_channels, groups));
  conv2_ = register_module("conv2", Conv3(out_channels, out_channels));
  if (emb_dim > 0) emb_proj_ = register_module("emb_proj", nn::Linear(emb_dim, 2 * out_channels));
  if (in_channels != out_channels)
    skip_ = register_module("skip", Conv1(in_channels, out_channels));
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  auto h = conv1_(torch::silu(norm1_(x)));
  h = norm2_(h);
  if (!emb_proj_.is_empty() && emb.defined()) {
    auto scale_shift = emb_proj_(torch::silu(emb)).unsqueeze(-1).unsqueeze(-1).chunk(2, 1);
    h = h * (1 + scale_shift[0]) + scale_shift[1];
  }
  h = conv2_(torch::silu(h));
  return h + (skip_.is_empty() ? x : skip_(x));
}

ImageEncoderImpl::ImageEncoderImpl(const UNetOptions& options) : options_(options) {
  stem_ = register_module(
      "stem", Conv3(options.image_channels + options.guidance_channels, options.EncoderWidth(0)));
  int64_t in = options.EncoderWidth(0);
  for (int64_t l = 0; l < options.levels; ++l) {
    const int64_t width = options.EncoderWidth(l);
    blocks_->push_back(ResBlock(in, width, 0, options.groups));
    projections_->push_back(Conv1(width, options.Width(l)));
    if (l + 1 < options.levels) downsamples_->push_back(Conv3(width, width, 2));
    in = width;
  }
  bottom_ = register_module("bottom", ResBlock(in, in, 0, options.groups));
  register_module("blocks", blocks_);
  register_module("projections", projections_);
  register_module("downsamples", downsamples_);
}

std::vector<torch::Tensor> ImageEncoderImpl::forward(const torch::Tensor& images) {
  std::vector<torch::Tensor> features;
  auto h = stem_(images);
  for (int64_t l = 0; l < options_.levels; ++l) {
    h = blocks_[l]->as<ResBlock>()->forward(h, torch::Tensor());
    if (l + 1 == options_.levels) h = bottom_(h, torch::Tensor());
    features.push_back(projections_[l]->as<nn::Conv2d>()->forward(h));
    if (l + 1 < options_.levels) h = downsamples_[l]->as<nn::Conv2d>()->forward(h);
  }
  return features;
}

UNetImpl::UNetImpl(const UNetOptions& options) : options_(options) {
  const int64_t emb = options.time_embedding_dim;
  encoder_ = register_module("encoder", ImageEncoder(options));
  time_mlp_ = register_module(
      "time_mlp", nn::Sequential(nn::Linear(emb, emb), nn::SiLU(), nn::Linear(emb, emb)));
  if (options.latent_dim > 0) {
    mapping_ = register_module(
        "mapping", nn::Sequential(nn::Linear(options.latent_dim, emb), nn::SiLU(),
                                  nn::Linear(emb, emb), nn::SiLU(), nn::Linear(emb, emb)));
  }
  stem_ = register_module("stem", Conv3(options.label_channels, options.Width(0)));
  int64_t in = options.Width(0);
  for (int64_t l = 0; l < options.levels; ++l) {
    const int64_t width = options.Width(l);
    down_blocks_->push_back(ResBlock(in, width, emb, options.groups));
    if (l + 1 < options.levels) downsamples_->push_back(Conv3(width, width, 2));
    in = width;
  }
  mid_ = register_module("mid", ResBlock(in, in, emb, options.groups));
  for (int64_t l = options.levels - 1; l >= 0; --l) {
    const int64_t width = options.Width(l);
    if (l + 1 < options.levels) up_convs_->push_back(Conv3(options.Width(l + 1), width));
    up_blocks_->push_back(ResBlock(2 * width, width, emb, options.groups));
  }
  out_norm_ = register_module("out_norm", Norm(options.Width(0), options.groups));
  out_conv_ = register_module("out_conv", Conv3(options.Width(0), options.label_channels));
  register_module("down_blocks", down_blocks_);
  register_module("downsamples", downsamples_);
  register_module("up_convs", up_convs_);
  register_module("up_blocks", up_blocks_);
}

std::vector<torch::Tensor> UNetImpl::Encode(const torch::Tensor& images) {
  return encoder_(images);
}

torch::Tensor UNetImpl::Embedding(const torch::Tensor& t, const torch::Tensor& z) {
  auto emb = time_mlp_->forward(SinusoidalEmbedding(t, options_.time_embedding_dim));
  if (!mapping_.is_empty()) {
    TORCH_CHECK(z.defined() && z.dim() == 2 && z.size(1) == options_.latent_dim,
                "UNet: latent z must be [n, ", options_.latent_dim, "]");
    emb = emb + mapping_->forward(z);
  }
  return emb;
}

torch::Tensor UNetImpl::Denoise(const torch::Tensor& x_t, const torch::Tensor& t,
                                const torch::Tensor& z,
                                const std::vector<torch::Tensor>& features) {
  TORCH_CHECK(static_cast<int64_t>(features.size()) == options_.levels,
              "UNet: expected one feature map per level");
  const auto emb = Embedding(t, z);
  std::vector<torch::Tensor> skips;
  auto h = stem_(x_t);
  for (int64_t l = 0; l < options_.levels; ++l) {
    h = down_blocks_[l]->as<ResBlock>()->forward(h, emb) + features[l];
    skips.push_back(h);
    if (l + 1 < options_.levels) h = downsamples_[l]->as<nn::Conv2d>()->forward(h);
  }
  h = mid_(h, emb);
  size_t up = 0;
  for (int64_t l = options_.levels - 1; l >= 0; --l) {
    if (l + 1 < options_.levels) {
      h = torch::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2});
      h = up_convs_[up - 1]->as<nn::Conv2d>()->forward(h);
    }
    h = up_blocks_[up]->as<ResBlock>()->forward(torch::cat({h, skips[l]}, 1), emb);
    ++up;
  }
  return out_conv_(torch::silu(out_norm_(h)));
}

torch::Tensor UNetImpl::forward(const torch::Tensor& images, const torch::Tensor& x_t,
                                const torch::Tensor& t, const torch::Tensor& z) {
  return Denoise(x_t, t, z, Encode(images));
}

}  // namespace clickdiff::model
