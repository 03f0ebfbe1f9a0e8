// config/model_options.h — the one place where a Config becomes the model library's options:
// segmenter, trainer and aggregator, the compute device and how clickdiffd spreads sampling over
// devices. Pure functions of the Config; the model library itself knows nothing of YAML.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "model/aggregator.h"
#include "model/segmenter.h"
#include "model/trainer.h"

namespace clickdiff {

// Errors: kInvalidArgument naming the config key whose value the model rejects.
Result<model::SegmenterOptions> SegmenterOptionsFrom(const Config& config);
// The image channels model.color asks of a new model: 1 (gray), 3 (rgb), or 0 (auto: `clickdiff
// train` follows its images; SegmenterOptionsFrom, for everyone else, takes 3).
int64_t ImageChannelsFor(model::ColorMode color);
// A model file decides what it takes; model.color set to gray or rgb must agree with it (auto
// takes any). Errors: kInvalidArgument naming `what` (the file) and model.color.
Status CheckModelColor(const Config& config, const model::SegmenterOptions& loaded,
                       const std::string& what);
// A loaded model draws its clicks as it was trained to (its file records it): a warning naming
// `what` when that is not what model.click_guidance asks of new models; empty when they agree or
// the model takes no clicks.
std::string ClickGuidanceWarning(const Config& config, const model::SegmenterOptions& loaded,
                                 const std::string& what);
// What a loaded model's file fixes against the config: ClickGuidanceWarning, and a warning when
// model.crop_to_content differs from how the model places its images (it keeps its own way);
// the warnings joined by "; ", empty when everything agrees.
std::string ModelFileWarnings(const Config& config, const model::SegmenterOptions& loaded,
                              const std::string& what);
model::TrainerOptions TrainerOptionsFrom(const TrainerConfig& config);
// `num_classes` comes from the model actually loaded, which may differ from the config's.
model::AggregatorOptions AggregatorOptionsFrom(const AggregatorConfig& config, int64_t num_classes);
// An aggregator for the model's class count. Errors name the aggregator.* key at fault.
Result<model::Aggregator> MakeAggregator(const AggregatorConfig& config, int64_t num_classes);

// What a model command runs on: torch threads set from compute.torch_threads, the device resolved
// from compute.device. Errors: kUnavailable naming compute.device (a GPU this machine lacks).
struct Compute {
  torch::Device device = torch::kCPU;
  int threads = 1;
};
Result<Compute> SetUpCompute(const Config& config);

// How clickdiffd samples: `shards` sampler threads (sampler.shards; 0: one per serving device, at
// most sampler.samples) over `devices` (model/runtime.h ServingDevices, the resolved
// compute.device first, cut to those a shard draws on). Errors: as ResolveDevice, naming
// compute.device.
struct ServingPlan {
  std::vector<torch::Device> devices;
  int shards = 1;
};
Result<ServingPlan> PlanServing(const Config& config);

}  // namespace clickdiff
