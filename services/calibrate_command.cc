// `clickdiff calibrate`: measures, on validation images with ground truth, which aggregation rule
// and threshold turn a model's samples into the best masks, how Dice grows with the number of
// samples N, and (given the clicks) how a disk of the best fixed radius around each click scores.
// Prints JSON; the best rule is also printed as the config lines that select it.
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "config/model_options.h"
#include "model/checkpoint_store.h"
#include "model/metrics.h"
#include "services/command.h"
#include "services/offline_dataset.h"

namespace clickdiff {
namespace {

struct CalibrateArgs {
  ConfigOptions config;
  std::string model;
  std::string images;
  std::string truth;
  std::string clicks;
  int samples = 32;
  int steps = -1;
  int limit = 0;
  uint64_t seed = 1000;
};

struct Candidate {
  AggregatorConfig rule;
  double dice = 0;
};

// Mean class Dice of `rule` applied to the first n samples of every image.
Result<double> ScoreRule(const AggregatorConfig& rule, const std::vector<OfflineImage>& images,
                         const std::vector<torch::Tensor>& samples, int64_t n,
                         int64_t num_classes) {
  Result<model::Aggregator> aggregator = MakeAggregator(rule, num_classes);
  if (!aggregator.ok()) return aggregator.status();
  model::MetricsOptions metrics;
  metrics.num_classes = num_classes;
  metrics.compute_hd95 = false;  // the sweep ranks by Dice
  model::MetricsAccumulator accumulator(metrics);
  for (size_t i = 0; i < images.size(); ++i) {
    Result<model::Aggregation> a =
        AggregateOnImage(*aggregator, samples[i].slice(0, 0, n), images[i]);
    if (!a.ok()) return a.status();
    CLICKDIFF_RETURN_IF_ERROR(accumulator.Add(a->mask, images[i].native_mask));
  }
  return accumulator.Finish().mean.dice;
}

// The click-disk baseline: every positive click paints a disk of `radius` image pixels with its
// class. Returns mean class Dice over the images.
Result<double> ScoreDisks(double radius, const std::vector<OfflineImage>& images,
                          const std::vector<std::vector<Click>>& clicks, int64_t num_classes) {
  model::MetricsOptions metrics;
  metrics.num_classes = num_classes;
  metrics.compute_hd95 = false;
  model::MetricsAccumulator accumulator(metrics);
  for (size_t i = 0; i < images.size(); ++i) {
    const model::GridMapping& m = images[i].mapping;
    torch::Tensor ys = torch::arange(m.height, torch::kFloat32).view({-1, 1});
    torch::Tensor xs = torch::arange(m.width, torch::kFloat32).view({1, -1});
    torch::Tensor pred = torch::zeros({m.height, m.width}, torch::kInt64);
    for (const Click& c : clicks[i]) {
      if (!c.positive) continue;
      torch::Tensor inside = (xs - c.x).pow(2) + (ys - c.y).pow(2) <= radius * radius;
      pred.masked_fill_(inside, c.class_id);
    }
    CLICKDIFF_RETURN_IF_ERROR(accumulator.Add(pred, images[i].native_mask));
  }
  return accumulator.Finish().mean.dice;
}

std::vector<AggregatorConfig> CandidateRules() {
  std::vector<AggregatorConfig> rules;
  AggregatorConfig majority;
  majority.rule = model::AggregationRule::kMajority;
  rules.push_back(majority);
  for (double t : {0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5}) {
    AggregatorConfig r;
    r.rule = model::AggregationRule::kThreshold;
    r.threshold = t;
    rules.push_back(r);
  }
  for (double sigma : {1.0, 2.0, 3.0, 4.0, 6.0}) {
    for (double t : {0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}) {
      AggregatorConfig r;
      r.rule = model::AggregationRule::kDensity;
      r.density_sigma = sigma;
      r.density_threshold = t;
      rules.push_back(r);
    }
  }
  for (double sigma : {1.0, 2.0, 3.0, 4.0}) {
    for (double floor : {0.0, 0.02, 0.05, 0.1}) {
      AggregatorConfig r;
      r.rule = model::AggregationRule::kOtsu;
      r.density_sigma = sigma;
      r.otsu_floor = floor;
      rules.push_back(r);
    }
  }
  return rules;
}

nlohmann::json RuleJson(const AggregatorConfig& r) {
  nlohmann::json j = {{"rule", model::AggregationRuleName(r.rule)}};
  if (r.rule == model::AggregationRule::kThreshold) j["threshold"] = r.threshold;
  if (r.rule == model::AggregationRule::kDensity) {
    j["density_sigma"] = r.density_sigma;
    j["density_threshold"] = r.density_threshold;
  }
  if (r.rule == model::AggregationRule::kOtsu) {
    j["density_sigma"] = r.density_sigma;
    j["otsu_floor"] = r.otsu_floor;
  }
  return j;
}

// Each image's clicks from the clicks file, in the order of `images`.
Result<std::vector<std::vector<Click>>> ClicksByImage(const std::string& file,
                                                      const std::vector<OfflineImage>& images,
                                                      int64_t num_classes) {
  std::vector<std::vector<Click>> clicks(images.size());
  if (file.empty()) return clicks;
  ClickFileOptions click_options;
  click_options.num_classes = static_cast<int>(num_classes);
  Result<std::vector<Click>> all = ReadClicksFile(file, click_options);
  if (!all.ok()) return all.status();
  for (size_t i = 0; i < images.size(); ++i) {
    for (const Click& c : *all) {
      if (c.image == images[i].name) clicks[i].push_back(c);
    }
  }
  return clicks;
}

// Every candidate rule scored on the same draws (into report["rules"]) and the best of them.
Result<Candidate> BestRule(const std::vector<OfflineImage>& images,
                           const std::vector<torch::Tensor>& samples, int64_t n,
                           int64_t num_classes, nlohmann::json& report) {
  nlohmann::json rules = nlohmann::json::array();
  Candidate best;
  best.dice = -1;
  for (const AggregatorConfig& rule : CandidateRules()) {
    Result<double> dice = ScoreRule(rule, images, samples, n, num_classes);
    if (!dice.ok()) return dice.status();
    nlohmann::json row = RuleJson(rule);
    row["dice"] = *dice;
    rules.push_back(row);
    if (*dice > best.dice) best = {rule, *dice};
  }
  report["rules"] = rules;
  report["best"] = RuleJson(best.rule);
  report["best"]["dice"] = best.dice;
  nlohmann::json curve = nlohmann::json::array();
  for (int64_t k = 1; k <= n; k *= 2) {
    Result<double> dice = ScoreRule(best.rule, images, samples, k, num_classes);
    if (!dice.ok()) return dice.status();
    curve.push_back({{"samples", k}, {"dice", *dice}});
  }
  report["dice_vs_samples"] = curve;
  return best;
}

// The best fixed-radius disk around each click: the baseline a model must beat.
Status ScoreClickDisks(const std::vector<OfflineImage>& images,
                       const std::vector<std::vector<Click>>& clicks, int64_t num_classes,
                       nlohmann::json& report) {
  nlohmann::json disks = nlohmann::json::array();
  double best_radius = 0;
  double best_disk = -1;
  for (double radius :
       {1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 28.0, 32.0}) {
    Result<double> dice = ScoreDisks(radius, images, clicks, num_classes);
    if (!dice.ok()) return dice.status();
    disks.push_back({{"radius", radius}, {"dice", *dice}});
    if (*dice > best_disk) best_disk = *dice, best_radius = radius;
  }
  report["click_disks"] = disks;
  report["best_click_disk"] = {{"radius", best_radius}, {"dice", best_disk}};
  return Status::Ok();
}

// The --set arguments that select `rule`: one per field RuleJson reports.
std::string RuleSettings(const AggregatorConfig& rule) {
  const nlohmann::json fields = RuleJson(rule);
  std::string lines;
  for (const auto& [key, value] : fields.items()) {
    lines += (lines.empty() ? "aggregator." : " aggregator.") + key + "=" +
             (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return lines;
}

Status RunCalibrate(const CalibrateArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<Compute> compute = SetUpCompute(*config);
  if (!compute.ok()) return compute.status();
  Result<model::Segmenter> segmenter = model::CheckpointStore::Load(args.model, compute->device);
  if (!segmenter.ok()) return segmenter.status();
  const int64_t num_classes = segmenter->options().num_classes;
  const int64_t steps = args.steps >= 0 ? args.steps : config->sampler.steps;

  OfflineDatasetSpec spec;
  spec.images_dir = args.images;
  spec.masks_dir = args.truth;
  spec.clicks_file = args.clicks;
  spec.num_classes = static_cast<int>(num_classes);
  spec.resolution = static_cast<int>(segmenter->options().resolution);
  spec.crop_to_content = segmenter->options().crop_to_content;
  spec.image_channels = segmenter->options().unet.image_channels;
  spec.keep_pixels = config->aggregator.edge_band > 0;
  Result<std::vector<OfflineImage>> loaded = LoadOfflineDataset(spec);
  if (!loaded.ok()) return loaded.status();
  std::vector<OfflineImage> images = std::move(loaded).value();
  if (args.limit > 0 && static_cast<int>(images.size()) > args.limit) images.resize(args.limit);
  Result<std::vector<std::vector<Click>>> clicks = ClicksByImage(args.clicks, images, num_classes);
  if (!clicks.ok()) return clicks.status();

  // Draw the samples once; every rule and every N is scored on the same draws.
  auto start = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> samples;
  for (size_t i = 0; i < images.size(); ++i) {
    Result<torch::Tensor> drawn =
        segmenter->Sample(images[i].grid_image.unsqueeze(0), args.samples, steps, args.seed + i,
                          config->sampler.memory_budget_mb, {images[i].grid_clicks});
    if (!drawn.ok()) return drawn.status().WithContext(images[i].name);
    samples.push_back((*drawn)[0].to(torch::kUInt8));
  }
  double sample_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("drew {} samples for each of {} images in {:.1f} s", args.samples, images.size(),
               sample_seconds);

  nlohmann::json report = {
      {"images", images.size()},
      {"samples", args.samples},
      {"network_evaluations_per_sample", segmenter->NetworkEvaluations(steps)},
      {"sampling_seconds_per_image", sample_seconds / static_cast<double>(images.size())}};
  Result<Candidate> best = BestRule(images, samples, args.samples, num_classes, report);
  if (!best.ok()) return best.status();
  // The rule the configuration selects, on the same draws: how far the uncalibrated default is
  // from the best a calibration could pick.
  Result<double> configured =
      ScoreRule(config->aggregator, images, samples, args.samples, num_classes);
  if (!configured.ok()) return configured.status();
  report["configured"] = RuleJson(config->aggregator);
  report["configured"]["dice"] = *configured;
  if (!args.clicks.empty()) {
    CLICKDIFF_RETURN_IF_ERROR(ScoreClickDisks(images, *clicks, num_classes, report));
  }
  out << report.dump(2) << "\n";
  spdlog::info("best rule on {}: Dice {:.4f} with {}", args.images, best->dice,
               RuleSettings(best->rule));
  return Status::Ok();
}

}  // namespace

void AddCalibrateCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<CalibrateArgs>();
  auto* cmd = app.add_subcommand(
      "calibrate",
      "measure on validation data which aggregation rule gives the best masks, Dice against the "
      "number of samples, and the best fixed-radius click-disk baseline");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--model", args->model, "model file")->required();
  cmd->add_option("--images", args->images, "directory of validation images")->required();
  cmd->add_option("--truth", args->truth, "their ground-truth masks")->required();
  cmd->add_option("--clicks", args->clicks, "their clicks: also score the click-disk baseline");
  cmd->add_option("--samples", args->samples, "samples per image (the N curve doubles up to it)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--steps", args->steps, "denoising steps (default: sampler.steps)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--limit", args->limit, "use at most this many images (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", args->seed, "sampling seed")->capture_default_str();
  cmd->callback([&context, args] { Finish(context, RunCalibrate(*args, *context.out)); });
}

}  // namespace clickdiff
