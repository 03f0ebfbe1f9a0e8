#include "model/segmenter.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <utility>
#include <vector>

namespace clickdiff::model {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

// Re-initialises convolutions and linear layers like LibTorch's defaults (uniform in
// +-1/sqrt(fan_in)) but from `gen`, so the weights depend on the seed only.
void InitializeWeights(torch::nn::Module& net, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (const auto& module : net.modules(/*include_self=*/false)) {
    torch::Tensor weight, bias;
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      weight = conv->weight;
      bias = conv->bias;
    } else if (auto* linear = module->as<torch::nn::Linear>()) {
      weight = linear->weight;
      bias = linear->bias;
    } else {
      continue;
    }
    const double fan_in = static_cast<double>(weight.numel()) / static_cast<double>(weight.size(0));
    const double bound = 1.0 / std::sqrt(fan_in);
    weight.uniform_(-bound, bound, gen);
    if (bias.defined()) bias.uniform_(-bound, bound, gen);
  }
}

Status CheckExample(const TrainingExample& ex, const SegmenterOptions& o, size_t index) {
  const std::string where = "training example " + std::to_string(index);
  const int64_t r = o.resolution;
  if (!ex.image.defined() || ex.image.dim() != 3 || ex.image.size(0) != o.unet.image_channels ||
      ex.image.size(1) != r || ex.image.size(2) != r || !ex.image.is_floating_point()) {
    return InvalidArgument(where + ": image must be a [" + Str(o.unet.image_channels) + "," +
                           Str(r) + "," + Str(r) + "] float tensor");
  }
  if (!ex.target.defined() || ex.target.dim() != 2 || ex.target.size(0) != r ||
      ex.target.size(1) != r || ex.target.scalar_type() != torch::kLong) {
    return InvalidArgument(where + ": target must be a [" + Str(r) + "," + Str(r) +
                           "] int64 tensor");
  }
  if (ex.target.min().item<int64_t>() < 0 || ex.target.max().item<int64_t>() >= o.num_classes) {
    return InvalidArgument(where + ": target has a class id outside [0, " + Str(o.num_classes) +
                           ")");
  }
  if (!std::isfinite(ex.weight) || ex.weight < 0) {
    return InvalidArgument(where + ": weight must be a finite number >= 0, got " +
                           std::to_string(ex.weight));
  }
  if (ex.known.defined() && (ex.known.sizes() != ex.target.sizes())) {
    return InvalidArgument(where + ": known must have the target's shape");
  }
  return Status::Ok();
}

// One pixel of each example's `region` ([B,R,R] bool) drawn at random, none where it is empty.
torch::Tensor RandomPixel(const torch::Tensor& region, at::Generator& gen, torch::Device device) {
  const auto scores = torch::where(region, RandUniform(region.sizes(), gen, device), -1.0);
  const auto best = std::get<0>(scores.flatten(1).max(1)).view({-1, 1, 1});
  return scores.eq(best).logical_and(region);
}

// `region` ([B,R,R] bool) grown by `radius` pixels: every pixel whose (2 radius + 1)^2
// neighbourhood meets it.
torch::Tensor Dilated(const torch::Tensor& region, int64_t radius) {
  const auto grown = torch::max_pool2d(region.to(torch::kFloat).unsqueeze(1),
                                       {2 * radius + 1, 2 * radius + 1}, {1, 1}, {radius, radius});
  return grown.squeeze(1) > 0.5;
}

// The clicks a click_input model is shown in training, [B,R,R] bool: each known pixel of an
// example that `may_show` ([B,1,1] bool) with probability kClickShownProbability, but never one
// click of each example, drawn at random. A shown click is no evidence of anything but itself (the
// network could copy it); only the click held back teaches the network to follow the others, so
// an example with one click is never shown one.
torch::Tensor ShownClicks(const torch::Tensor& known, const torch::Tensor& may_show,
                          at::Generator& gen, torch::Device device) {
  const auto held = RandomPixel(known, gen, device);
  return known.logical_and(may_show)
      .logical_and(RandUniform(known.sizes(), gen, device) < kClickShownProbability)
      .logical_and(held.logical_not());
}

// Clicks simulated on dense masks and partial label maps, which have no clicks of their own, for a
// click_input model, [B,R,R] bool: with probability `chance` an example that `may_simulate`
// ([B,1,1] bool) gets, for each class its mask holds, one positive click at a random pixel of the
// class a margin inside it (anywhere in it when none is, as on a scribble's stroke), with
// probability 1/2 a second one, and with probability 1/2 one negative click on a known background
// pixel near the object (`known` [B,R,R]: every pixel of a dense mask, a scribble's pixels). An
// annotator's clicks fall anywhere in a structure, so these are random rather than at its centre;
// the loss then asks for the whole mask, which teaches what a click means: the object around it,
// not the pixel.
torch::Tensor SimulatedClicks(const torch::Tensor& target, const torch::Tensor& known,
                              const torch::Tensor& may_simulate, int64_t num_classes, double chance,
                              at::Generator& gen, torch::Device device) {
  const auto b = target.size(0);
  auto shown = torch::zeros_like(target, torch::kBool);
  if (chance <= 0) return shown;
  const auto simulate = may_simulate.logical_and(RandUniform({b, 1, 1}, gen, device) < chance);
  // At the 64 grid: 2 pixels inside the object, negatives within 6 pixels of it.
  const int64_t margin = std::max<int64_t>(1, target.size(1) / 32);
  const int64_t reach = std::max<int64_t>(2, target.size(1) / 10);
  for (int64_t k = 1; k < num_classes; ++k) {
    const auto region = target.eq(k).logical_and(simulate);
    // Pixels whose whole (2 margin + 1)^2 neighbourhood lies in the class.
    const auto inner = region.logical_and(Dilated(region.logical_not(), margin).logical_not());
    const auto has_inner = inner.flatten(1).any(1).view({-1, 1, 1});
    const auto where = torch::where(has_inner, inner, region);
    shown = shown.logical_or(RandomPixel(where, gen, device));
    const auto second = RandUniform({b, 1, 1}, gen, device) < 0.5;
    shown = shown.logical_or(RandomPixel(where.logical_and(second), gen, device));
  }
  const auto near = Dilated(target.gt(0).logical_and(simulate), reach);
  const auto band = near.logical_and(target.eq(0)).logical_and(known).logical_and(simulate);
  const auto negative = RandUniform({b, 1, 1}, gen, device) < 0.5;
  return shown.logical_or(RandomPixel(band.logical_and(negative), gen, device));
}

// Sets the encoder's weights on the guidance channels to zero: a click_input model starts as the
// same model without click input and learns what a click means from held-back clicks alone (an
// image with one click never trains these weights).
void ZeroGuidanceWeights(UNet& network) {
  torch::NoGradGuard no_grad;
  const int64_t image_channels = network->options().image_channels;
  for (auto& item : network->named_parameters()) {
    if (item.key() == "encoder.stem.weight") item.value().slice(1, image_channels).zero_();
  }
}

// One batch's supervision, stacked on the model's device.
struct Supervision {
  torch::Tensor image;           // [B,C,R,R] float
  torch::Tensor target;          // [B,R,R] int64
  torch::Tensor known;           // [B,R,R] bool: clicked pixels (positive and negative), a
                                 // scribble's pixels, every pixel of a dense mask
  torch::Tensor dense;           // [B] bool
  torch::Tensor partial;         // [B] bool: partial label maps (scribbles)
  torch::Tensor example_weight;  // [B] float
  torch::Tensor labelled;        // [B,R,R] bool: the known pixels and every pixel of a dense mask
  // [B,R,R] float, the per-pixel weights of the loss and of the diffusion process's own term: the
  // focal weights, or for the partial losses the labelled pixels alone (an unlabelled pixel has
  // no x0 to match); times the example's weight either way.
  torch::Tensor pixel_weights;

  Supervision(torch::Tensor image_in, torch::Tensor target_in, torch::Tensor known_in,
              torch::Tensor dense_in, torch::Tensor partial_in, torch::Tensor example_weight_in,
              const LossOptions& options)
      : image(std::move(image_in)),
        target(std::move(target_in)),
        known(std::move(known_in)),
        dense(std::move(dense_in)),
        partial(std::move(partial_in)),
        example_weight(std::move(example_weight_in)),
        labelled(known.logical_or(dense.view({-1, 1, 1}).expand_as(known))) {
    const auto per_example = example_weight.view({-1, 1, 1});
    pixel_weights = options.kind == LossKind::kFocal
                        ? PixelWeights(target, known, dense, partial, options) * per_example
                        : labelled.to(torch::kFloat) * per_example;
  }

  // [B,K] bool: the classes each image holds (labelled pixels of that class; background always).
  torch::Tensor Present(int64_t num_classes) const {
    const auto labelled_classes =
        torch::one_hot(target, num_classes).logical_and(labelled.unsqueeze(-1)).any(2).any(1);
    return labelled_classes.index_fill(1, torch::zeros({1}, target.options()), true);
  }
};

// The loss `options.kind` names on the network's class prediction (model/losses.h).
torch::Tensor SupervisionLoss(const torch::Tensor& logits, const Supervision& s,
                              const LossOptions& options, at::Generator& gen) {
  if (options.kind == LossKind::kFocal) {
    return FocalLoss(logits, s.target, s.pixel_weights,
                     FocalGammas(s.dense.logical_or(s.partial), options));
  }
  auto loss = PartialCrossEntropy(logits, s.target, s.labelled, s.example_weight);
  if (options.kind == LossKind::kPce) return loss;
  const auto probs = torch::softmax(logits, 1);
  if (options.kind == LossKind::kPceMs) {
    loss = loss + options.ms_weight * MumfordShahLoss(probs, s.image);
  } else {
    loss = loss + options.cv_weight * ContrastiveVarianceLoss(probs, s.image,
                                                              s.Present(logits.size(1)),
                                                              options.cv_temperature, gen);
  }
  return loss + options.tv_weight * TotalVariation(probs);
}

// Whether the loss and every gradient the optimizer would apply are finite (one sync).
bool StepFinite(const torch::Tensor& loss, const torch::optim::Optimizer& optimizer) {
  std::vector<torch::Tensor> finite = {torch::isfinite(loss).all()};
  for (const auto& group : optimizer.param_groups()) {
    for (const torch::Tensor& p : group.params()) {
      if (p.grad().defined()) finite.push_back(torch::isfinite(p.grad()).all());
    }
  }
  return torch::stack(finite).all().item<bool>();
}

}  // namespace

Status Segmenter::CheckClicks(const std::vector<std::vector<Click>>& clicks, int64_t images) const {
  if (clicks.empty()) return Status::Ok();
  if (static_cast<int64_t>(clicks.size()) != images) {
    return InvalidArgument("clicks: " + Str(static_cast<int64_t>(clicks.size())) + " lists for " +
                           Str(images) + " images");
  }
  // The checks of a click example (on the grid, class in [1, K)), on an empty grid of the model's.
  const int64_t r = options_.resolution;
  const auto grid = torch::zeros({1, r, r});
  for (size_t i = 0; i < clicks.size(); ++i) {
    Result<TrainingExample> checked = MakeClickExample(grid, clicks[i], options_.num_classes);
    if (!checked.ok()) return checked.status().WithContext("image " + std::to_string(i));
  }
  return Status::Ok();
}

UNetOptions SegmenterOptions::EffectiveUNet() const {
  UNetOptions u = unet;
  u.label_channels = num_classes;
  u.latent_dim = method == Method::kGaussianX0 ? gaussian.latent_dim : 0;
  u.guidance_channels = click_input ? num_classes : 0;
  return u;
}

Status ValidateOptions(const SegmenterOptions& o) {
  if (o.num_classes < 2 || o.num_classes > 255) {
    return InvalidArgument("num_classes " + Str(o.num_classes) + " must be in [2, 255]");
  }
  if (o.unet.levels < 1 || o.unet.levels > 7) {
    return InvalidArgument("unet.levels " + Str(o.unet.levels) + " must be in [1, 7]");
  }
  const int64_t factor = int64_t{1} << (o.unet.levels - 1);
  if (o.resolution < 8 || o.resolution > 4096 || o.resolution % factor != 0) {
    return InvalidArgument("resolution " + Str(o.resolution) + " must be in [8, 4096] and " +
                           "divisible by 2^(levels-1) = " + Str(factor));
  }
  if (o.unet.base_width < 1 || o.unet.encoder_width < 1 || o.unet.max_width_multiplier < 1 ||
      o.unet.image_channels < 1 || o.unet.groups < 1) {
    return InvalidArgument("unet widths, image_channels and groups must be >= 1");
  }
  if (o.unet.time_embedding_dim < 2 || o.unet.time_embedding_dim % 2 != 0) {
    return InvalidArgument("unet.time_embedding_dim must be even and >= 2");
  }
  if (o.d3pm.num_timesteps < 1 || o.d3pm.num_timesteps > 10000 || o.d3pm.beta_start < 0 ||
      o.d3pm.beta_end < o.d3pm.beta_start || o.d3pm.beta_end >= 1) {
    return InvalidArgument(
        "d3pm: need 1 <= num_timesteps <= 10000, 0 <= beta_start <= beta_end < 1");
  }
  if (o.gaussian.num_timesteps < 1 || o.gaussian.num_timesteps > 1000 || o.gaussian.beta_min <= 0 ||
      o.gaussian.beta_max < o.gaussian.beta_min || o.gaussian.latent_dim < 1) {
    return InvalidArgument(
        "gaussian: need 1 <= num_timesteps <= 1000, 0 < beta_min <= beta_max, latent_dim >= 1");
  }
  if (o.loss.focal_alpha <= 0 || o.loss.focal_alpha >= 1 || o.loss.focal_gamma < 0 ||
      o.loss.dense_gamma < 0 || !(o.loss.dense_weight > 0) || o.loss.vlb_weight < 0 ||
      o.loss.mse_weight < 0 || o.loss.ms_weight < 0 || o.loss.cv_weight < 0 ||
      o.loss.tv_weight < 0) {
    return InvalidArgument(
        "loss: need 0 < focal_alpha < 1, dense_weight > 0 and non-negative gammas and weights");
  }
  if (!(o.augment.intensity >= 0 && o.augment.intensity <= 1 && o.augment.noise >= 0 &&
        o.augment.noise <= 1)) {
    return InvalidArgument("augment: intensity and noise must be in [0, 1]");
  }
  if (!(o.d3pm.prior_share >= 0 && o.d3pm.prior_share <= 1)) {
    return InvalidArgument("d3pm.prior_share must be in [0, 1]");
  }
  if (!(o.simulated_clicks >= 0 && o.simulated_clicks <= 1)) {
    return InvalidArgument("simulated_clicks must be in [0, 1]");
  }
  if (!(o.loss.cv_temperature > 0)) {
    return InvalidArgument("loss.cv_temperature must be > 0");
  }
  return Status::Ok();
}

Segmenter::Segmenter(const SegmenterOptions& options, torch::Device device)
    : options_(options), device_(device), train_generator_(MakeGenerator(options.seed + 1)) {
  options_.unet = options.EffectiveUNet();
  network_ = UNet(options_.unet);
  auto init_generator = MakeGenerator(options.seed);
  InitializeWeights(*network_, init_generator);
  if (options_.click_input) ZeroGuidanceWeights(network_);
  network_->to(device);
  switch (options.method) {
    case Method::kD3pm:
      process_ = std::make_unique<D3pmProcess>(options.num_classes, options.d3pm);
      break;
    case Method::kGaussianX0:
      process_ = std::make_unique<GaussianX0Process>(options.num_classes, options.gaussian);
      break;
    case Method::kUNet:
      break;
  }
}

Result<Segmenter> Segmenter::Create(const SegmenterOptions& options, torch::Device device) {
  CLICKDIFF_RETURN_IF_ERROR(ValidateOptions(options));
  try {
    return Segmenter(options, device);
  } catch (const std::exception& e) {
    return Internal(std::string("creating the segmenter failed: ") + e.what());
  }
}

void Segmenter::ReseedTraining(uint64_t seed) {
  options_.seed = seed;
  train_generator_ = MakeGenerator(seed + 1);
}

Result<torch::Tensor> Segmenter::Loss(const std::vector<TrainingExample>& batch) {
  return LossWith(batch, train_generator_, /*augment=*/true);
}

Result<float> Segmenter::HeldOutLoss(const std::vector<TrainingExample>& data, int64_t batch_size,
                                     int64_t draws, uint64_t seed) {
  if (data.empty()) return InvalidArgument("no held-out examples");
  if (batch_size < 1 || draws < 1) return InvalidArgument("batch_size and draws must be >= 1");
  torch::NoGradGuard no_grad;
  auto gen = MakeGenerator(seed);
  double sum = 0;
  int64_t count = 0;
  const auto size = static_cast<int64_t>(data.size());
  for (int64_t draw = 0; draw < draws; ++draw) {
    for (int64_t start = 0; start < size; start += batch_size) {
      const int64_t end = std::min(size, start + batch_size);
      const std::vector<TrainingExample> batch(data.begin() + start, data.begin() + end);
      auto loss = LossWith(batch, gen, /*augment=*/false);
      if (!loss.ok()) return loss.status();
      try {
        sum += loss->item<double>() * static_cast<double>(end - start);
      } catch (const std::exception& e) {
        return Internal(std::string("the held-out loss failed: ") + e.what());
      }
      count += end - start;
    }
  }
  return static_cast<float>(sum / static_cast<double>(count));
}

Result<torch::Tensor> Segmenter::LossWith(const std::vector<TrainingExample>& batch,
                                          at::Generator& gen, bool augment) {
  if (batch.empty()) return InvalidArgument("training batch is empty");
  for (size_t i = 0; i < batch.size(); ++i) {
    CLICKDIFF_RETURN_IF_ERROR(CheckExample(batch[i], options_, i));
  }
  try {
    std::vector<torch::Tensor> images, targets, known;
    std::vector<uint8_t> dense, partial, clickable;
    std::vector<float> example_weights;
    for (const auto& ex : batch) {
      example_weights.push_back(static_cast<float>(ex.weight));
      images.push_back(ex.image.to(torch::kFloat));
      targets.push_back(ex.target);
      known.push_back(ex.known.defined() ? ex.known.to(torch::kBool) : ex.target > 0);
      dense.push_back(ex.dense ? 1 : 0);
      partial.push_back(ex.partial ? 1 : 0);
      clickable.push_back(ex.clicks_as_input && !ex.dense ? 1 : 0);
    }
    const int64_t b = static_cast<int64_t>(batch.size());
    auto image = torch::stack(images).to(device_);
    auto target = torch::stack(targets).to(device_);
    auto known_map = torch::stack(known).to(device_);
    const auto flags = [this](const std::vector<uint8_t>& values) {
      return torch::tensor(std::vector<int64_t>(values.begin(), values.end()))
          .to(torch::kBool)
          .to(device_);
    };
    const auto dense_flags = flags(dense);
    const auto partial_flags = flags(partial);
    if (augment) {
      AugmentBatch augmented{image, target, known_map};
      Augment(options_.augment, gen, augmented);
      image = augmented.image;
      target = augmented.target;
      known_map = augmented.known;
    }
    const auto example_weight = torch::tensor(example_weights).to(device_);
    const Supervision supervision(image, target, known_map, dense_flags, partial_flags,
                                  example_weight, options_.loss);
    auto input = image;
    if (options_.click_input) {
      auto shown = ShownClicks(known_map, flags(clickable).view({-1, 1, 1}), gen, device_);
      const auto simulates = [](uint8_t flag) { return flag != 0; };
      if (std::any_of(dense.begin(), dense.end(), simulates) ||
          std::any_of(partial.begin(), partial.end(), simulates)) {
        shown = shown.logical_or(SimulatedClicks(
            target, known_map, dense_flags.logical_or(partial_flags).view({-1, 1, 1}),
            options_.num_classes, options_.simulated_clicks, gen, device_));
      }
      input = torch::cat({image, ClickGuidance(target, shown, options_.num_classes,
                                               options_.click_guidance, image)},
                         1);
    }
    if (!process_) {
      const int64_t r = options_.resolution;
      const auto x_t = torch::zeros({b, options_.num_classes, r, r}, image.options());
      const auto t = torch::zeros({b}, image.options());
      const auto logits = network_->forward(input, x_t, t, torch::Tensor());
      return SupervisionLoss(logits, supervision, options_.loss, gen);
    }
    const NoisedBatch noised = process_->Noise(target, gen);
    torch::Tensor z;
    if (options_.unet.latent_dim > 0) {
      z = RandNormal({b, options_.unet.latent_dim}, gen, device_);
    }
    const auto logits = network_->forward(input, noised.x_t, noised.network_time, z);
    auto loss = SupervisionLoss(logits, supervision, options_.loss, gen);
    const double aux_weight =
        options_.method == Method::kD3pm ? options_.loss.vlb_weight : options_.loss.mse_weight;
    if (aux_weight > 0) {
      loss = loss + aux_weight *
                        process_->AuxiliaryLoss(logits, noised, target, supervision.pixel_weights);
    }
    return loss;
  } catch (const std::exception& e) {
    return Internal(std::string("computing the training loss failed: ") + e.what());
  }
}

Result<float> Segmenter::TrainStep(const std::vector<TrainingExample>& batch,
                                   torch::optim::Optimizer& optimizer) {
  auto loss = Loss(batch);
  if (!loss.ok()) return loss.status();
  try {
    optimizer.zero_grad();
    loss->backward();
    if (!StepFinite(*loss, optimizer)) {
      optimizer.zero_grad();
      const float value = loss->item<float>();
      return std::isfinite(value) ? std::numeric_limits<float>::quiet_NaN() : value;
    }
    optimizer.step();
    return loss->item<float>();
  } catch (const std::exception& e) {
    return Internal(std::string("training step failed: ") + e.what());
  }
}

int64_t Segmenter::NetworkEvaluations(int64_t steps) const {
  if (!process_) return 1;
  const int64_t t = process_->NumTimesteps();
  return (steps <= 0 || steps > t) ? t : steps;
}

int64_t Segmenter::SamplesPerChunk(int64_t memory_budget_mb) const {
  // Live activations of one denoiser pass: about a dozen maps of each level's width.
  int64_t floats = 0;
  for (int64_t l = 0; l < options_.unet.levels; ++l) {
    const int64_t side = options_.resolution >> l;
    floats += 12 * options_.unet.Width(l) * side * side;
  }
  const int64_t per_sample = floats * static_cast<int64_t>(sizeof(float));
  const int64_t budget = std::max<int64_t>(memory_budget_mb, 1) * 1024 * 1024;
  return std::max<int64_t>(1, budget / std::max<int64_t>(per_sample, 1));
}

Result<torch::Tensor> Segmenter::Sample(const torch::Tensor& images, int64_t num_samples,
                                        int64_t steps, uint64_t seed, int64_t memory_budget_mb,
                                        const std::vector<std::vector<Click>>& clicks) const {
  const int64_t r = options_.resolution;
  if (!images.defined() || images.dim() != 4 || images.size(1) != options_.unet.image_channels ||
      images.size(2) != r || images.size(3) != r || !images.is_floating_point()) {
    return InvalidArgument("images must be a [B," + Str(options_.unet.image_channels) + "," +
                           Str(r) + "," + Str(r) + "] float tensor");
  }
  if (num_samples < 1 || num_samples > 100000) {
    return InvalidArgument("num_samples " + Str(num_samples) + " must be in [1, 100000]");
  }
  if (steps < 0) return InvalidArgument("steps " + Str(steps) + " must be >= 0");
  CLICKDIFF_RETURN_IF_ERROR(CheckClicks(clicks, images.size(0)));
  try {
    torch::InferenceMode guard;
    auto gen = MakeGenerator(seed);
    auto& net = *network_.ptr();
    const int64_t k = options_.num_classes;
    const int64_t chunk = SamplesPerChunk(memory_budget_mb);
    auto out = torch::empty({images.size(0), num_samples, r, r}, torch::kLong);
    for (int64_t b = 0; b < images.size(0); ++b) {
      auto input = images.slice(0, b, b + 1).to(device_, torch::kFloat);
      const std::vector<Click> none;
      const std::vector<Click>& shown = clicks.empty() ? none : clicks[static_cast<size_t>(b)];
      if (options_.click_input) {
        input = torch::cat(
            {input, ClickGuidance({shown}, k, r, device_, options_.click_guidance, input)}, 1);
      }
      const auto features = net.Encode(input);
      torch::Tensor probs;  // "unet": one evaluation per image
      if (!process_) {
        const auto x_t = torch::zeros({1, k, r, r}, features[0].options());
        probs = torch::softmax(net.Denoise(x_t, torch::zeros({1}, x_t.options()), {}, features), 1);
      }
      for (int64_t start = 0; start < num_samples; start += chunk) {
        const int64_t n = std::min(chunk, num_samples - start);
        torch::Tensor samples;
        if (!process_) {
          samples = SampleCategorical(probs.expand({n, k, r, r}), gen);
        } else {
          const int64_t latent = options_.unet.latent_dim;
          DenoiseFn denoise = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
            torch::Tensor z;
            if (latent > 0) z = RandNormal({x_t.size(0), latent}, gen, device_);
            return net.Denoise(x_t, t, z, features);
          };
          samples = process_->Sample(denoise, n, r, r, steps, gen, device_);
        }
        out[b].slice(0, start, start + n).copy_(samples.to(torch::kCPU));
      }
      ImposeClicks(out[b], shown);
    }
    return out;
  } catch (const std::exception& e) {
    return Internal(std::string("sampling failed: ") + e.what());
  }
}

}  // namespace clickdiff::model
