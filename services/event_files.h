// services/event_files.h — the events `clickdiff produce` and `clickdiff annotate` send, built from
// the interchange files (DESIGN.md): a PNG image, a click of a clicks file, a class-id mask.
#pragma once

#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "io/dataset_files.h"
#include "schemas/events.pb.h"

namespace clickdiff {

// The ImageEvent of the PNG file `path`, its bytes as they are (the service decodes and checks
// them); size, channels and pixel type from decoding it as the service will. Errors: the file's.
Result<v1::ImageEvent> ImageEventFromPng(const std::string& path, const std::string& image_id,
                                         const std::string& dataset);

// The ClickEvent of `click`. Without an explicit id the click's content is its identity
// ("image@x,y:class", "-" for a negative click): the same click sent twice is applied once.
v1::ClickEvent ClickEventFrom(const Click& click, const std::string& dataset);

// A LabelEvent carrying a dense class-id mask (`class_ids`: width * height, row-major): ground
// truth for scoring when `for_evaluation` (label id "truth"), else a training label ("dense";
// `produce --scribbles` renames its partial ones "scribbles").
template <typename T>
v1::LabelEvent LabelEventFrom(const std::string& dataset, const std::string& image_id, int width,
                              int height, const std::vector<T>& class_ids, bool for_evaluation) {
  v1::LabelEvent label;
  label.set_dataset(dataset);
  label.set_image_id(image_id);
  label.set_label_id(for_evaluation ? "truth" : "dense");
  label.set_for_evaluation(for_evaluation);
  label.mutable_dense()->set_width(static_cast<uint32_t>(width));
  label.mutable_dense()->set_height(static_cast<uint32_t>(height));
  std::string ids(class_ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<char>(class_ids[i]);
  label.mutable_dense()->set_class_ids(std::move(ids));
  label.set_timestamp_ms(NowMs());
  return label;
}

}  // namespace clickdiff
