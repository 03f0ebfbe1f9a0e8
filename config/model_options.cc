#include "config/model_options.h"

#include <algorithm>

#include "model/runtime.h"

namespace clickdiff {

Result<model::SegmenterOptions> SegmenterOptionsFrom(const Config& config) {
  const ModelConfig& m = config.model;
  model::SegmenterOptions o;
  o.method = m.method;
  o.num_classes = m.num_classes;
  o.resolution = m.resolution;
  o.unet.levels = m.levels;
  // kAuto: `clickdiff train` chooses from its images (LoadOfflineDataset); anyone else takes RGB.
  const int64_t channels = ImageChannelsFor(m.color);
  o.unet.image_channels = channels > 0 ? channels : 3;
  o.unet.base_width = m.base_channels;
  o.unet.encoder_width = m.encoder_channels;
  o.d3pm.num_timesteps = m.d3pm.steps;
  o.d3pm.beta_start = m.d3pm.beta_start;
  o.d3pm.beta_end = m.d3pm.beta_end;
  o.d3pm.prior_share = m.d3pm.prior_share;
  o.gaussian.num_timesteps = m.gaussian.steps;
  o.gaussian.beta_min = m.gaussian.beta_min;
  o.gaussian.beta_max = m.gaussian.beta_max;
  o.gaussian.latent_dim = m.gaussian.latent_dim;
  o.loss.kind = m.loss.kind;
  o.loss.focal_gamma = m.loss.focal_gamma;
  o.loss.focal_alpha = m.loss.focal_alpha;
  o.loss.dense_weight = m.loss.dense_weight;
  o.loss.ms_weight = m.loss.ms_weight;
  o.loss.cv_weight = m.loss.cv_weight;
  o.loss.cv_temperature = m.loss.cv_temperature;
  o.loss.tv_weight = m.loss.tv_weight;
  o.loss.vlb_weight = m.loss.vlb_weight;
  o.augment.flips = m.augment.flips;
  o.augment.rotations = m.augment.rotations;
  o.augment.intensity = m.augment.intensity;
  o.augment.noise = m.augment.noise;
  o.click_input = m.click_input;
  o.crop_to_content = m.crop_to_content;
  o.click_guidance = m.click_guidance;
  o.simulated_clicks = m.simulated_clicks;
  o.seed = config.trainer.seed;
  Status valid = model::ValidateOptions(o);
  if (!valid.ok()) return valid.WithContext("model");
  return o;
}

int64_t ImageChannelsFor(model::ColorMode color) {
  switch (color) {
    case model::ColorMode::kGray:
      return 1;
    case model::ColorMode::kRgb:
      return 3;
    case model::ColorMode::kAuto:
      break;
  }
  return 0;
}

Status CheckModelColor(const Config& config, const model::SegmenterOptions& loaded,
                       const std::string& what) {
  const model::ColorMode color = config.model.color;
  const int64_t wanted = ImageChannelsFor(color);
  if (wanted == 0 || loaded.unet.image_channels == wanted) return Status::Ok();
  return InvalidArgument(what + " takes " + (loaded.unet.image_channels == 3 ? "RGB" : "gray") +
                         " images but model.color is " + NameOf(model::kColorModeNames, color) +
                         " (set it to auto or to what the model takes)");
}

std::string ClickGuidanceWarning(const Config& config, const model::SegmenterOptions& loaded,
                                 const std::string& what) {
  if (!loaded.click_input || loaded.click_guidance == config.model.click_guidance) return "";
  return what + " draws its clicks as " + model::ClickGuidanceName(loaded.click_guidance) +
         " bumps, as it was trained; model.click_guidance " +
         model::ClickGuidanceName(config.model.click_guidance) + " applies to new models only";
}

std::string ModelFileWarnings(const Config& config, const model::SegmenterOptions& loaded,
                              const std::string& what) {
  std::string warnings = ClickGuidanceWarning(config, loaded, what);
  if (loaded.crop_to_content != config.model.crop_to_content) {
    if (!warnings.empty()) warnings += "; ";
    warnings += what + (loaded.crop_to_content ? " crops" : " does not crop") +
                " images to their content, as it was trained; model.crop_to_content " +
                (config.model.crop_to_content ? "true" : "false") + " applies to new models only";
  }
  return warnings;
}

model::TrainerOptions TrainerOptionsFrom(const TrainerConfig& config) {
  model::TrainerOptions o;
  o.batch_size = config.batch_size;
  o.learning_rate = config.learning_rate;
  o.seed = config.seed;
  return o;
}

model::AggregatorOptions AggregatorOptionsFrom(const AggregatorConfig& config,
                                               int64_t num_classes) {
  model::AggregatorOptions o;
  o.num_classes = num_classes;
  o.rule = config.rule;
  o.threshold = config.threshold;
  o.density_sigma = config.density_sigma;
  o.density_relative_threshold = config.density_threshold;
  o.otsu_floor = config.otsu_floor;
  o.click_reach = config.click_reach;
  o.edge_band = config.edge_band;
  return o;
}

Result<model::Aggregator> MakeAggregator(const AggregatorConfig& config, int64_t num_classes) {
  Result<model::Aggregator> aggregator =
      model::Aggregator::Create(AggregatorOptionsFrom(config, num_classes));
  if (!aggregator.ok()) return aggregator.status().WithContext("aggregator");
  return aggregator;
}

Result<Compute> SetUpCompute(const Config& config) {
  Compute compute;
  compute.threads = model::ConfigureThreads(config.compute.torch_threads);
  Result<torch::Device> device = model::ResolveDevice(config.compute.device);
  if (!device.ok()) return device.status().WithContext("compute.device");
  compute.device = *device;
  return compute;
}

Result<ServingPlan> PlanServing(const Config& config) {
  Result<torch::Device> device = model::ResolveDevice(config.compute.device);
  if (!device.ok()) return device.status().WithContext("compute.device");
  ServingPlan plan;
  plan.devices = model::ServingDevices(config.compute.device, *device,
                                       static_cast<int>(torch::cuda::device_count()));
  const int devices = static_cast<int>(plan.devices.size());
  plan.shards =
      config.sampler.shards > 0 ? config.sampler.shards : std::min(devices, config.sampler.samples);
  plan.devices.erase(plan.devices.begin() + std::min(devices, plan.shards), plan.devices.end());
  return plan;
}

}  // namespace clickdiff
