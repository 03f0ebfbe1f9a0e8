// `clickdiff infer`: draws N samples per image, aggregates them and writes masks and uncertainty.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "config/model_options.h"
#include "io/image_codec.h"
#include "model/checkpoint_store.h"
#include "services/command.h"
#include "services/offline_dataset.h"

namespace clickdiff {
namespace {

// The spellings --rule accepts: the rule table's.
std::vector<std::string> RuleNames() {
  std::vector<std::string> names;
  for (const auto& entry : model::kAggregationRuleNames) names.emplace_back(entry.name);
  return names;
}

struct InferArgs {
  ConfigOptions config;
  std::string model;
  std::string images;
  std::string clicks;
  std::string out;
  int samples = 0;  // 0: config
  int steps = -1;   // -1: config
  std::string rule;
  uint64_t seed = 0;
};

template <typename T>
std::vector<T> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous().cpu();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

Status RunInfer(const InferArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<Compute> compute = SetUpCompute(*config);
  if (!compute.ok()) return compute.status();
  Result<model::Segmenter> segmenter = model::CheckpointStore::Load(args.model, compute->device);
  if (!segmenter.ok()) return segmenter.status();
  const int64_t num_classes = segmenter->options().num_classes;
  AggregatorConfig aggregation = config->aggregator;
  if (!args.rule.empty()) {
    Result<model::AggregationRule> rule = model::ParseAggregationRule(args.rule);
    if (!rule.ok()) return rule.status().WithContext("--rule");
    aggregation.rule = *rule;
  }
  Result<model::Aggregator> aggregator = MakeAggregator(aggregation, num_classes);
  if (!aggregator.ok()) return aggregator.status();
  const int64_t samples = args.samples > 0 ? args.samples : config->sampler.samples;
  const int64_t steps = args.steps >= 0 ? args.steps : config->sampler.steps;

  OfflineDatasetSpec spec;
  spec.images_dir = args.images;
  spec.clicks_file = args.clicks;
  spec.num_classes = static_cast<int>(num_classes);
  spec.resolution = static_cast<int>(segmenter->options().resolution);
  spec.crop_to_content = segmenter->options().crop_to_content;
  spec.image_channels = segmenter->options().unet.image_channels;
  spec.limits.max_width = spec.limits.max_height = config->limits.max_image_side;
  spec.keep_pixels = config->aggregator.edge_band > 0;
  Result<std::vector<OfflineImage>> dataset = LoadOfflineDataset(spec);
  if (!dataset.ok()) return dataset.status();

  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(args.out) / "uncertainty", ec);
  if (ec) return Unavailable(args.out + ": cannot create the output directory: " + ec.message());

  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < dataset->size(); ++i) {
    const OfflineImage& image = (*dataset)[i];
    Result<torch::Tensor> drawn =
        segmenter->Sample(image.grid_image.unsqueeze(0), samples, steps, args.seed + i,
                          config->sampler.memory_budget_mb, {image.grid_clicks});
    if (!drawn.ok()) return drawn.status().WithContext(image.name);
    Result<model::Aggregation> result = AggregateOnImage(*aggregator, (*drawn)[0], image);
    if (!result.ok()) return result.status();
    const int w = static_cast<int>(image.mapping.width);
    const int h = static_cast<int>(image.mapping.height);
    CLICKDIFF_RETURN_IF_ERROR(WriteMaskPng((fs::path(args.out) / image.name).string(),
                                           ToVector<int64_t>(result->mask), w, h));
    CLICKDIFF_RETURN_IF_ERROR(
        WriteUncertaintyPng((fs::path(args.out) / "uncertainty" / image.name).string(),
                            ToVector<float>(result->uncertainty.to(torch::kFloat32)), w, h));
    spdlog::debug("{}: {} samples x {} evaluations", image.name, samples,
                  segmenter->NetworkEvaluations(steps));
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json summary = {
      {"images", dataset->size()},
      {"samples", samples},
      {"network_evaluations_per_sample", segmenter->NetworkEvaluations(steps)},
      {"rule", model::AggregationRuleName(aggregation.rule)},
      {"seconds", seconds},
      {"seconds_per_image", seconds / static_cast<double>(dataset->size())},
      {"out", args.out}};
  out << summary.dump() << "\n";
  return Status::Ok();
}

}  // namespace

void AddInferCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<InferArgs>();
  auto* cmd = app.add_subcommand(
      "infer",
      "segment images: N samples per image, aggregated into a mask and an uncertainty map");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--model", args->model, "model file from clickdiff train")->required();
  cmd->add_option("--images", args->images, "directory of PNG images")->required();
  cmd->add_option("--out", args->out,
                  "output directory: class-id PNG masks, and uncertainty/ with 8-bit maps")
      ->required();
  cmd->add_option("--clicks", args->clicks,
                  "clicks JSON Lines: each mask holds its image's clicks, and a model trained "
                  "with model.click_input is shown them");
  cmd->add_option("--samples", args->samples, "samples per image (default: sampler.samples)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", args->steps, "denoising steps (default: sampler.steps; 0: model's T)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rule", args->rule, "aggregation rule (default: aggregator.rule)")
      ->check(CLI::IsMember(RuleNames()));
  cmd->add_option("--seed", args->seed, "sampling seed");
  cmd->callback([&context, args] { Finish(context, RunInfer(*args, *context.out)); });
}

}  // namespace clickdiff
