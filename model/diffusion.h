// model/diffusion.h — the interface every diffusion process (d3pm, gaussian_x0) implements, plus
// the random-number helpers they share.
//
// A process owns its noise schedule (built once, immutable) and knows how to (a) noise a batch of
// label maps for training, (b) add its own loss term and (c) run the reverse process given a
// denoiser callback. It holds no network: the Segmenter passes a DenoiseFn that closes over the
// network and the image encoding. All randomness comes from the at::Generator passed in (a CPU
// generator; numbers are drawn on the CPU and moved to the device, so a seed gives the same samples
// on every device). Processes are immutable after construction and therefore thread-safe.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace clickdiff::model {

// One denoiser evaluation: x_t [n,K,H,W] (network encoding of the noisy label) and the network
// time t [n] float -> class logits for x0 [n,K,H,W].
using DenoiseFn = std::function<torch::Tensor(const torch::Tensor& x_t, const torch::Tensor& t)>;

// A training batch after the forward process.
struct NoisedBatch {
  torch::Tensor x_t;           // [B,K,H,W] float: what the network sees
  torch::Tensor timesteps;     // [B] int64 in 1..T
  torch::Tensor network_time;  // [B] float: the time input of the network
  torch::Tensor state;         // process-specific (d3pm: class ids of x_t [B,H,W])
};

class DiffusionProcess {
 public:
  virtual ~DiffusionProcess() = default;

  virtual std::string Name() const = 0;
  virtual int64_t NumClasses() const = 0;
  virtual int64_t NumTimesteps() const = 0;

  // t ~ U{1..T} per example, x_t ~ q(x_t | x0) (d3pm with prior_share: that share of examples at
  // t = T with x_T drawn from the prior). x0 [B,H,W] int64 class ids on any device.
  virtual NoisedBatch Noise(const torch::Tensor& x0, at::Generator& gen) const = 0;

  // The process's own loss term (unweighted by LossOptions' coefficient): d3pm returns the
  // pixel-weighted variational term, gaussian_x0 the pixel-weighted ||x0 - x0_hat||^2.
  virtual torch::Tensor AuxiliaryLoss(const torch::Tensor& logits, const NoisedBatch& noised,
                                      const torch::Tensor& x0,
                                      const torch::Tensor& weights) const = 0;

  // Runs the reverse process for n label maps of size height x width on `device` and returns
  // class ids [n,H,W] int64. steps: 0 = NumTimesteps(); fewer visits RespacedTimesteps(T, steps).
  virtual torch::Tensor Sample(const DenoiseFn& denoise, int64_t n, int64_t height, int64_t width,
                               int64_t steps, at::Generator& gen, torch::Device device) const = 0;

  // Named schedule tensors (double), stored in checkpoints and compared on load.
  virtual std::vector<std::pair<std::string, torch::Tensor>> ScheduleTensors() const = 0;

  // The network's time input for integer timesteps t: t * 1000 / T, so every process feeds the
  // sinusoidal embedding the same range.
  torch::Tensor NetworkTime(const torch::Tensor& timesteps) const;
};

// Timesteps visited by a sampler with `steps` of T (0 or >= T: all): descending, T first, 0 last,
// steps + 1 entries, t_i = round(i * T / steps).
std::vector<int64_t> RespacedTimesteps(int64_t num_timesteps, int64_t steps);

// Random helpers: drawn on the CPU from `gen`, returned on `device` as float.
torch::Tensor RandUniform(at::IntArrayRef shape, at::Generator& gen, torch::Device device);
torch::Tensor RandNormal(at::IntArrayRef shape, at::Generator& gen, torch::Device device);
// t ~ U{1..T}, [n] int64 on `device`.
torch::Tensor RandTimesteps(int64_t n, int64_t num_timesteps, at::Generator& gen,
                            torch::Device device);
// One categorical draw per pixel from probs [n,K,H,W] (rows summing to 1) -> [n,H,W] int64.
torch::Tensor SampleCategorical(const torch::Tensor& probs, at::Generator& gen);

// Class ids [n,H,W] -> one-hot [n,K,H,W] scaled to {-1, 1}.
torch::Tensor SignedOneHot(const torch::Tensor& ids, int64_t num_classes);

// A CPU generator seeded with `seed`.
at::Generator MakeGenerator(uint64_t seed);

}  // namespace clickdiff::model
