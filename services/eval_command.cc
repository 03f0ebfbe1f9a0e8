// `clickdiff eval`: scores predicted masks against ground truth and prints JSON.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "io/dataset_files.h"
#include "model/metrics.h"
#include "services/command.h"
#include "services/scores_json.h"

namespace clickdiff {
namespace {

struct EvalArgs {
  std::string pred;
  std::string truth;
  int classes = 0;  // 0: from the data
};

// Reads every PNG of `dir` as class-id masks (ids up to 255 are accepted here; the class count is
// checked afterwards).
Result<std::vector<NamedMask>> ReadMasks(const std::string& dir) {
  Result<std::vector<NamedImage>> images = ReadImageDirectory(dir);
  if (!images.ok()) return images.status();
  std::vector<NamedMask> masks;
  for (const NamedImage& image : *images) {
    Result<NamedMask> mask = MaskFromImage(image, 256);
    if (!mask.ok()) return mask.status();
    masks.push_back(std::move(mask).value());
  }
  return masks;
}

Status RunEval(const EvalArgs& args, std::ostream& out) {
  Result<std::vector<NamedMask>> truth = ReadMasks(args.truth);
  if (!truth.ok()) return truth.status();
  Result<std::vector<NamedMask>> pred = ReadMasks(args.pred);
  if (!pred.ok()) return pred.status();
  std::map<std::string, const NamedMask*> pred_by_name;
  for (const NamedMask& p : *pred) pred_by_name[p.name] = &p;

  int64_t max_id = 1;
  for (const auto* set : {&*truth, &*pred}) {
    for (const NamedMask& m : *set) {
      max_id = std::max(max_id, *std::max_element(m.class_ids.begin(), m.class_ids.end()));
    }
  }
  int64_t classes = args.classes > 0 ? args.classes : max_id + 1;
  if (max_id >= classes) {
    return InvalidArgument("a mask holds class id " + std::to_string(max_id) +
                           " but --classes is " + std::to_string(classes));
  }

  model::MetricsOptions options;
  options.num_classes = classes;
  model::MetricsAccumulator accumulator(options);
  for (const NamedMask& t : *truth) {
    auto p = pred_by_name.find(t.name);
    if (p == pred_by_name.end()) {
      return NotFound(args.pred + ": no prediction for " + t.name + " (truth: " + t.path + ")");
    }
    if (p->second->width != t.width || p->second->height != t.height) {
      return InvalidArgument(p->second->path + ": " + std::to_string(p->second->width) + "x" +
                             std::to_string(p->second->height) + " but the truth " + t.path +
                             " is " + std::to_string(t.width) + "x" + std::to_string(t.height));
    }
    auto as_tensor = [](const NamedMask& m) {
      return torch::tensor(m.class_ids, torch::kInt64).view({m.height, m.width});
    };
    CLICKDIFF_RETURN_IF_ERROR(accumulator.Add(as_tensor(*p->second), as_tensor(t)));
  }
  out << ScoresToJson(accumulator.Finish()).dump(2) << "\n";
  return Status::Ok();
}

}  // namespace

void AddEvalCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval", "score predicted masks against ground truth: Dice, IoU, HD95, precision, recall");
  cmd->add_option("--pred", args->pred, "directory of predicted class-id PNG masks")->required();
  cmd->add_option("--truth", args->truth, "directory of ground-truth masks, same file names")
      ->required();
  cmd->add_option("--classes", args->classes,
                  "number of classes, background included "
                  "(default: largest id found + 1)")
      ->check(CLI::Range(2, 256));
  cmd->callback([&context, args] { Finish(context, RunEval(*args, *context.out)); });
}

}  // namespace clickdiff
