// model/segmenter.h — the one object the CLI and the service use to train and sample a
// click-supervised segmentation model.
//
// A Segmenter owns its options, the conditional U-Net (model/unet.h), the diffusion process of its
// method and the device they live on:
//   * "d3pm"        categorical diffusion (paper 000), T = 200 by default; model/d3pm.h.
//   * "gaussian_x0" few-step Gaussian label diffusion with x0 prediction and a latent z (paper 003,
//                   cDAL), T = 4 by default; model/gaussian_x0.h.
//   * "unet"        the deterministic baseline of paper 000 (Table 1s): the same U-Net with its
//                   label input fixed to zeros and its time input to 0, trained with the same
//                   focal loss. Its N "samples" are independent per-pixel draws from its predicted
//                   class distribution (one network evaluation per image), so vote fractions
//                   estimate its probabilities and the same aggregation applies to every method.
// Supervision (model/losses.h): click maps, scribbles and dense masks may share a batch; options
// .loss.kind chooses paper 000's focal loss or paper 001's partial cross-entropy with its
// Mumford-Shah or contrastive-variance term, applied to the network's class prediction.
//
// Thread-safety: Sample() may run concurrently from several threads (it only reads the network,
// under torch::InferenceMode, with its own generator); TrainStep()/Loss() mutate the training
// generator and gradients and must not overlap each other or Sample(). Move-only.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/augment.h"
#include "model/choices.h"
#include "model/click_guidance.h"
#include "model/d3pm.h"
#include "model/diffusion.h"
#include "model/gaussian_x0.h"
#include "model/losses.h"
#include "model/training_example.h"
#include "model/unet.h"

namespace clickdiff::model {

// The chance that training shows the network one click of a click example (click_input).
inline constexpr double kClickShownProbability = 0.5;

struct SegmenterOptions {
  Method method = Method::kD3pm;
  int64_t num_classes = 2;  // background + organs
  int64_t resolution = 64;  // the model works on R x R images; callers resize
  UNetOptions unet;         // label_channels and latent_dim are set from the fields below
  D3pmOptions d3pm;
  GaussianX0Options gaussian;
  LossOptions loss;
  AugmentOptions augment;  // of training batches (model/augment.h)
  // Clicks as network inputs (model/click_guidance.h): the image encoder also takes the image's
  // clicks, one channel per class, on weights that start at zero. Training shows each click of a
  // click example with probability kClickShownProbability, but holds one click of each example
  // back, and supervises on all of them: the held-back click teaches the network to follow the
  // ones it is shown, and it still segments an image without any. Examples with one click and
  // pseudo-labels train with none shown, dense masks and partial label maps (scribbles) with
  // simulated ones (simulated_clicks).
  bool click_input = false;
  // click_input: how the clicks are drawn (model/click_guidance.h); a model file records it.
  ClickGuidanceKind click_guidance = ClickGuidanceKind::kGaussian;
  // click_input: the chance that a dense mask or a partial label map is shown clicks simulated
  // from it (segmenter.cc, SimulatedClicks), so the network learns the whole object from a click;
  // 0: none. Pseudo-labels are not: in the learning loop that made the masks worse
  // (docs/experiments.md).
  double simulated_clicks = 0;
  // Images are cropped to their content before they go on the grid (model::ContentRegion); the
  // segmenter itself only carries the choice, so a model file records how its images were placed.
  bool crop_to_content = false;
  uint64_t seed = 0;  // weight initialisation and training randomness

  // The U-Net options actually used (label_channels = num_classes; latent_dim from gaussian;
  // guidance_channels = num_classes with click_input).
  UNetOptions EffectiveUNet() const;
};

// Errors: kInvalidArgument naming the field and its limit.
Status ValidateOptions(const SegmenterOptions& options);

class Segmenter {
 public:
  // Builds the networks on `device`, initialised deterministically from options.seed (its own
  // generator; the global torch generator is not touched). Errors: kInvalidArgument for bad
  // options; kInternal when LibTorch fails (e.g. the device is unusable).
  static Result<Segmenter> Create(const SegmenterOptions& options, torch::Device device);

  Segmenter(Segmenter&&) = default;
  Segmenter& operator=(Segmenter&&) = default;
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  // The training loss of one batch (options.loss on x0_hat + the process's weighted term), with the
  // graph attached. Augments the batch (options.augment). Errors: kInvalidArgument for an empty
  // batch or an example of the wrong shape/type/class range; kInternal for LibTorch failures.
  Result<torch::Tensor> Loss(const std::vector<TrainingExample>& batch);

  // The training loss averaged over `data` (in batches of `batch_size`, `draws` passes), without
  // augmentation or gradients, its noise (timesteps, x_t, latents) drawn from a generator seeded
  // with `seed`: the same seed gives the same draws, so successive weights are compared on equal
  // terms (held-out validation, model/trainer.h). Errors: as Loss(); kInvalidArgument for empty
  // data or counts < 1.
  Result<float> HeldOutLoss(const std::vector<TrainingExample>& data, int64_t batch_size,
                            int64_t draws, uint64_t seed);

  // Loss, backward, optimizer.step(). The optimizer must hold Parameters(). Returns the loss. A
  // step whose loss or gradients are not finite is skipped (the parameters and the optimizer's
  // state are left as they were, the gradients cleared) and returns that loss, or NaN for a
  // finite loss with non-finite gradients: callers test std::isfinite. Errors: as Loss().
  Result<float> TrainStep(const std::vector<TrainingExample>& batch,
                          torch::optim::Optimizer& optimizer);

  // Draws num_samples label maps per image. images [B,C,R,R] float in [0,1] (any device);
  // steps: reverse steps (0 = the process's T; fewer runs a respaced schedule; ignored by "unet");
  // seed: same seed, same samples (on a given device). The encoder runs once per image; the
  // samples of an image run as batches no larger than memory_budget_mb allows (at least one).
  // clicks: none, or one list per image on the grid: a click_input model is shown them, and
  // every sample holds each click's class at its pixel (0 for a negative click) whatever the
  // model. Returns [B,N,R,R] int64 class ids on the CPU. Errors: kInvalidArgument for bad shapes,
  // counts or clicks (off the grid, class outside [1, K)); kInternal for LibTorch failures.
  Result<torch::Tensor> Sample(const torch::Tensor& images, int64_t num_samples, int64_t steps,
                               uint64_t seed, int64_t memory_budget_mb = 1024,
                               const std::vector<std::vector<Click>>& clicks = {}) const;

  // Denoiser evaluations per sample for `steps` (0 = T): steps for diffusion, 1 for "unet" (which
  // evaluates once per image whatever N is). The image encoder adds one evaluation per image.
  int64_t NetworkEvaluations(int64_t steps) const;

  // Samples per batch that fit `memory_budget_mb` (an estimate of activation memory), >= 1.
  int64_t SamplesPerChunk(int64_t memory_budget_mb) const;

  // Restarts the training randomness (noise, flips) from `seed`, as Create would have seeded it;
  // the weights are untouched. A copy trained alongside its original draws its own noise.
  void ReseedTraining(uint64_t seed);

  std::vector<torch::Tensor> Parameters() const { return network_->parameters(); }
  const SegmenterOptions& options() const { return options_; }
  torch::Device device() const { return device_; }
  UNet network() const { return network_; }
  // Null for "unet".
  const DiffusionProcess* process() const { return process_.get(); }

 private:
  Segmenter(const SegmenterOptions& options, torch::Device device);
  // Errors: kInvalidArgument when `clicks` is neither empty nor one list per image, or a click
  // lies off the grid or names a class outside [1, K).
  Status CheckClicks(const std::vector<std::vector<Click>>& clicks, int64_t images) const;
  // Loss() with the randomness of `gen`, augmented or not.
  Result<torch::Tensor> LossWith(const std::vector<TrainingExample>& batch, at::Generator& gen,
                                 bool augment);

  SegmenterOptions options_;
  torch::Device device_;
  UNet network_{nullptr};
  std::unique_ptr<DiffusionProcess> process_;
  at::Generator train_generator_;  // training-time randomness; owned by the training thread
};

}  // namespace clickdiff::model
