// `clickdiff train`: trains a segmentation model offline from clicks (or dense masks) and saves it.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "config/model_options.h"
#include "model/checkpoint_store.h"
#include "model/trainer.h"
#include "services/command.h"
#include "services/offline_dataset.h"

namespace clickdiff {
namespace {

struct TrainArgs {
  ConfigOptions config;
  std::string images;
  std::string clicks;
  std::string masks;
  std::string scribbles;
  std::string out;
  std::string init;
  int64_t steps = 0;
  double seconds = 0;
  std::vector<int64_t> save_at;  // also save the model after these many steps
};

// Moves round(held_out x examples) examples, picked by the trainer's seed, out of `examples` and
// returns them; none (with a warning) when that is fewer than 2: one click is too noisy a judge.
std::vector<model::TrainingExample> HoldOut(std::vector<model::TrainingExample>& examples,
                                            const TrainerConfig& config) {
  const auto count =
      static_cast<size_t>(std::llround(config.held_out * static_cast<double>(examples.size())));
  if (count < 2 || count >= examples.size()) {
    if (config.held_out > 0) {
      spdlog::warn(
          "too few images to hold any out: the last (averaged) weights are kept, and a longer "
          "run may give smaller masks");
    }
    return {};
  }
  std::mt19937_64 rng(config.seed);
  std::shuffle(examples.begin(), examples.end(), rng);
  std::vector<model::TrainingExample> held_out(examples.end() - static_cast<std::ptrdiff_t>(count),
                                               examples.end());
  examples.resize(examples.size() - count);
  spdlog::info(
      "{} images held out: the weights kept are the latest within {} of the lowest loss "
      "on them",
      count, config.held_out_tolerance);
  return held_out;
}

// The progress line of a training run.
void LogProgress(const model::TrainProgress& p) {
  if (p.kept_step > 0) {
    spdlog::info(
        "step {} loss {:.3g} held-out {:.3g} (lowest {:.3g}; kept step {}) {:.2f} "
        "steps/s {:.0f} s",
        p.step, p.loss, p.held_out_loss, p.lowest_held_out_loss, p.kept_step, p.steps_per_second,
        p.elapsed_seconds);
  } else {
    spdlog::info("step {} loss {:.3g} {:.2f} steps/s {:.0f} s", p.step, p.loss, p.steps_per_second,
                 p.elapsed_seconds);
  }
}

// How many training examples come from clicks, dense masks and scribbles: {"clicks", "dense",
// "scribbles"}.
nlohmann::json ExampleKinds(const std::vector<model::TrainingExample>& examples) {
  int64_t dense = 0, partial = 0;
  for (const auto& e : examples) {
    dense += e.dense ? 1 : 0;
    partial += e.partial ? 1 : 0;
  }
  return {{"clicks", static_cast<int64_t>(examples.size()) - dense - partial},
          {"dense", dense},
          {"scribbles", partial}};
}

// "model.pt" saved after 500 steps: "model.step500.pt".
std::string MilestonePath(const std::string& out, int64_t step) {
  std::filesystem::path path(out);
  path.replace_extension(".step" + std::to_string(step) + path.extension().string());
  return path.string();
}

// The options' own errors: no supervision, no budget, milestones without steps.
Status CheckTrainArgs(const TrainArgs& args) {
  if (args.clicks.empty() && args.masks.empty() && args.scribbles.empty()) {
    return InvalidArgument(
        "give --clicks FILE (single-click supervision), --masks DIR (dense) and/or --scribbles DIR "
        "(partial label maps)");
  }
  if (args.steps <= 0 && args.seconds <= 0) return InvalidArgument("give --steps N or --seconds S");
  if (!args.save_at.empty() && args.steps <= 0) {
    return InvalidArgument("--save-at counts steps: give --steps N with it");
  }
  return Status::Ok();
}

Status RunTrain(const TrainArgs& args, std::ostream& out) {
  CLICKDIFF_RETURN_IF_ERROR(CheckTrainArgs(args));
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<Compute> compute = SetUpCompute(*config);
  if (!compute.ok()) return compute.status();
  const torch::Device device = compute->device;
  Result<model::Segmenter> segmenter = InvalidArgument("no model");
  // The model to train: the configured one (its image channels chosen once the images are read)
  // or the --init model.
  Result<model::SegmenterOptions> planned = SegmenterOptionsFrom(*config);
  if (!args.init.empty()) {
    segmenter = model::CheckpointStore::Load(args.init, device);
    if (!segmenter.ok()) return segmenter.status();
    CLICKDIFF_RETURN_IF_ERROR(CheckModelColor(*config, segmenter->options(), args.init));
    const std::string warning = ModelFileWarnings(*config, segmenter->options(), args.init);
    if (!warning.empty()) spdlog::warn("{}", warning);
    planned = segmenter->options();
  }
  if (!planned.ok()) return planned.status();

  OfflineDatasetSpec spec;
  spec.images_dir = args.images;
  spec.clicks_file = args.clicks;
  spec.masks_dir = args.masks;
  spec.scribbles_dir = args.scribbles;
  spec.num_classes = static_cast<int>(planned->num_classes);
  spec.resolution = static_cast<int>(planned->resolution);
  spec.crop_to_content = planned->crop_to_content;
  spec.image_channels =
      args.init.empty() ? ImageChannelsFor(config->model.color) : planned->unet.image_channels;
  spec.limits.max_width = spec.limits.max_height = config->limits.max_image_side;
  Result<std::vector<OfflineImage>> dataset = LoadOfflineDataset(spec);
  if (!dataset.ok()) return dataset.status();
  if (args.init.empty()) {
    planned->unet.image_channels = dataset->front().grid_image.size(0);  // auto: the images say
    segmenter = model::Segmenter::Create(*planned, device);
    if (!segmenter.ok()) return segmenter.status();
  }
  const model::SegmenterOptions& options = segmenter->options();
  Result<std::vector<model::TrainingExample>> examples =
      MakeTrainingExamples(*dataset, spec.num_classes);
  if (!examples.ok()) return examples.status();
  if (examples->empty()) {
    return InvalidArgument(args.images + ": no image has clicks, a mask or scribbles");
  }
  const std::vector<model::TrainingExample> held_out = HoldOut(*examples, config->trainer);
  const nlohmann::json kinds = ExampleKinds(*examples);
  spdlog::info(
      "training {} on {} images ({} from clicks, {} dense, {} scribbled) at {}x{}, {}, {} "
      "threads, {}",
      model::MethodName(options.method), examples->size(), kinds["clicks"].get<int64_t>(),
      kinds["dense"].get<int64_t>(), kinds["scribbles"].get<int64_t>(), options.resolution,
      options.resolution, options.unet.image_channels == 3 ? "colour" : "gray", compute->threads,
      device.str());

  model::TrainerOptions trainer_options = TrainerOptionsFrom(config->trainer);
  trainer_options.max_steps = args.steps;
  trainer_options.max_seconds = args.seconds;
  // Offline only: the service serves its teacher's average and has no held-out images.
  trainer_options.average_decay = config->trainer.ema_decay;
  trainer_options.validate_every = config->trainer.validate_every;
  trainer_options.tolerance = config->trainer.held_out_tolerance;
  model::Trainer trainer(&*segmenter, trainer_options);
  trainer.SetHeldOut(held_out);
  // Milestones split one run into legs of the same optimisation (Adam's state carries over).
  std::vector<int64_t> milestones = args.save_at;
  std::sort(milestones.begin(), milestones.end());
  milestones.erase(std::unique(milestones.begin(), milestones.end()), milestones.end());
  for (const int64_t milestone : milestones) {
    if (milestone >= args.steps) break;
    trainer.SetBudget(milestone - trainer.steps_done(), args.seconds);
    Result<model::TrainProgress> leg = trainer.Run(*examples, LogProgress);
    if (!leg.ok()) return leg.status();
    CLICKDIFF_RETURN_IF_ERROR(model::CheckpointStore::Save(
        trainer.Kept(), MilestonePath(args.out, trainer.steps_done())));
  }
  trainer.SetBudget(args.steps > 0 ? args.steps - trainer.steps_done() : 0, args.seconds);
  Result<model::TrainProgress> last = trainer.Run(*examples, LogProgress);
  if (!last.ok()) return last.status();
  CLICKDIFF_RETURN_IF_ERROR(model::CheckpointStore::Save(trainer.Kept(), args.out));

  nlohmann::json summary = {{"model", args.out},
                            {"method", model::MethodName(options.method)},
                            {"image_channels", options.unet.image_channels},
                            {"steps", last->step},
                            {"loss", last->loss},
                            {"held_out",
                             {{"images", held_out.size()},
                              {"kept_step", last->kept_step},
                              {"kept_loss", last->kept_held_out_loss},
                              {"lowest_loss", last->lowest_held_out_loss}}},
                            {"seconds", last->elapsed_seconds},
                            {"steps_per_second", last->steps_per_second},
                            {"examples", kinds}};
  out << summary.dump() << "\n";
  return Status::Ok();
}

}  // namespace

void AddTrainCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd =
      app.add_subcommand("train", "train a model from single clicks (or scribbles, dense masks)");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--images", args->images, "directory of PNG images")->required();
  cmd->add_option("--clicks", args->clicks, "clicks, JSON Lines (one click a line)");
  cmd->add_option("--masks", args->masks,
                  "directory of class-id PNG masks: full supervision for the images they cover");
  cmd->add_option("--scribbles", args->scribbles,
                  "directory of class-id PNG label maps, 255 where unlabelled: partial supervision "
                  "for the images they cover (with their clicks; a mask wins)");
  cmd->add_option("--out", args->out, "model file to write")->required();
  cmd->add_option("--init", args->init, "continue from this model file instead of a fresh one");
  cmd->add_option("--steps", args->steps, "training steps")->check(CLI::PositiveNumber);
  cmd->add_option("--seconds", args->seconds, "wall-clock budget")->check(CLI::PositiveNumber);
  cmd->add_option("--save-at", args->save_at,
                  "also save the model after these step counts (comma-separated; OUT.stepN.pt)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->callback([&context, args] { Finish(context, RunTrain(*args, *context.out)); });
}

}  // namespace clickdiff
