#include "services/scores_json.h"

#include <cmath>

namespace clickdiff {
namespace {

nlohmann::json Number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

nlohmann::json ScoresToJson(const model::DatasetScores& scores) {
  nlohmann::json classes = nlohmann::json::array();
  for (const model::ClassScores& c : scores.per_class) {
    classes.push_back({{"class", c.class_id},
                       {"dice", Number(c.dice)},
                       {"iou", Number(c.iou)},
                       {"hd95", Number(c.hd95)},
                       {"precision", Number(c.precision)},
                       {"recall", Number(c.recall)},
                       {"images", c.images}});
  }
  return {{"images", scores.num_images},
          {"classes", classes},
          {"mean",
           {{"dice", Number(scores.mean.dice)},
            {"iou", Number(scores.mean.iou)},
            {"hd95", Number(scores.mean.hd95)},
            {"precision", Number(scores.mean.precision)},
            {"recall", Number(scores.mean.recall)}}}};
}

}  // namespace clickdiff
