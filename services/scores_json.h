// services/scores_json.h — the JSON form of segmentation scores printed by the CLI:
//   {"images": 96, "classes": [{"class": 1, "dice": .., "iou": .., "hd95": .., "precision": ..,
//    "recall": .., "images": ..}], "mean": {"dice": .., "iou": .., "hd95": .., ...}}
// NaN (a class never evaluated) is written as null.
#pragma once

#include <nlohmann/json.hpp>

#include "model/metrics.h"

namespace clickdiff {

nlohmann::json ScoresToJson(const model::DatasetScores& scores);

}  // namespace clickdiff
