// base/labels.h — the label-map convention every module shares (schemas/events.proto DenseMask,
// label PNGs, the model's grids).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace clickdiff {

// A label map's value for a pixel whose class is unknown: a scribble's unmarked pixels. A map with
// such pixels is a partial label; classes are 0..254 (model.num_classes is at most 255).
inline constexpr int64_t kUnknownClass = 255;

// Whether a label map (class-id bytes, or ids) leaves a pixel unlabelled: a partial label.
inline bool HoldsUnknown(std::string_view class_ids) {
  return class_ids.find(static_cast<char>(kUnknownClass)) != std::string_view::npos;
}
inline bool HoldsUnknown(const std::vector<int64_t>& class_ids) {
  return std::find(class_ids.begin(), class_ids.end(), kUnknownClass) != class_ids.end();
}

}  // namespace clickdiff
