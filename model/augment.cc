#include "model/augment.h"

#include <functional>
#include <vector>

#include "model/diffusion.h"

namespace clickdiff::model {
namespace {

// Per-example choice between `a` and `b`: where pick[i], b[i], else a[i].
torch::Tensor Choose(const torch::Tensor& pick, const torch::Tensor& a, const torch::Tensor& b) {
  std::vector<int64_t> shape(static_cast<size_t>(a.dim()), 1);
  shape[0] = -1;
  return torch::where(pick.view(shape), b, a);
}

void ApplyToAll(AugmentBatch& batch, const torch::Tensor& pick,
                const std::function<torch::Tensor(const torch::Tensor&)>& transform) {
  batch.image = Choose(pick, batch.image, transform(batch.image));
  batch.target = Choose(pick, batch.target, transform(batch.target));
  batch.known = Choose(pick, batch.known, transform(batch.known));
}

}  // namespace

void Augment(const AugmentOptions& options, at::Generator& gen, AugmentBatch& batch) {
  const int64_t b = batch.image.size(0);
  const auto device = batch.image.device();
  if (options.flips) {
    const auto flip = RandUniform({b}, gen, device) < 0.5;
    ApplyToAll(batch, flip, [](const torch::Tensor& x) { return x.flip({-1}); });
  }
  if (options.rotations) {
    const auto quarter = (RandUniform({b}, gen, device) * 4).floor().clamp_max(3);
    for (int64_t k = 1; k <= 3; ++k) {
      ApplyToAll(batch, quarter == k, [k](const torch::Tensor& x) {
        return torch::rot90(x, k, {-2, -1});
      });
    }
  }
  if (options.intensity > 0) {
    const double s = options.intensity;
    const auto per_example = [&](double lo, double hi) {
      return (RandUniform({b}, gen, device) * (hi - lo) + lo).view({-1, 1, 1, 1});
    };
    const auto gamma = per_example(-s, s).exp();
    const auto contrast = per_example(1 - s, 1 + s);
    const auto brightness = per_example(-s / 2, s / 2);
    auto image = batch.image.clamp(0, 1).pow(gamma);
    const auto mean = image.mean({1, 2, 3}, /*keepdim=*/true);
    batch.image = ((image - mean) * contrast + mean + brightness).clamp(0, 1);
  }
  if (options.noise > 0) {
    const auto sigma = RandUniform({b}, gen, device).view({-1, 1, 1, 1}) * options.noise;
    batch.image = (batch.image + sigma * RandNormal(batch.image.sizes(), gen, device)).clamp(0, 1);
  }
}

}  // namespace clickdiff::model
