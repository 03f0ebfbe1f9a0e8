#include "model/training_example.h"

#include <algorithm>
#include <exception>
#include <string>

#include "model/click_guidance.h"

namespace clickdiff::model {
namespace {

Status CheckImage(const torch::Tensor& image) {
  if (!image.defined() || image.dim() != 3 || !image.is_floating_point()) {
    return InvalidArgument("training image must be a [C,H,W] float tensor");
  }
  return Status::Ok();
}

// `mask` as int64 class ids when it is [H,W] like `image` ([C,H,W]) and its ids are classes (or
// kUnknownClass, with `unknown_allowed`).
Result<torch::Tensor> CheckMask(const torch::Tensor& image, const torch::Tensor& mask,
                                int64_t num_classes, const std::string& what,
                                bool unknown_allowed = false) {
  if (!mask.defined() || mask.dim() != 2 || mask.size(0) != image.size(1) ||
      mask.size(1) != image.size(2)) {
    return InvalidArgument(what + " must be [H,W] matching the image");
  }
  const auto ids = mask.to(torch::kLong);
  const auto classes = unknown_allowed ? ids.masked_select(ids.ne(kUnknownClass)) : ids;
  if (classes.numel() == 0) return ids;
  const int64_t lowest = classes.min().item<int64_t>(), highest = classes.max().item<int64_t>();
  if (lowest < 0 || highest >= num_classes) {
    return InvalidArgument(what + " holds " + std::to_string(lowest < 0 ? lowest : highest) +
                           ", not a class id in [0, " + std::to_string(num_classes) + ")" +
                           (unknown_allowed ? " nor 255 (unknown)" : ""));
  }
  return ids;
}

// Marks `clicks` on `ex` (target and known, both [H,W]): a positive click its class, a negative
// one background. Errors: kInvalidArgument naming a click outside the image or of no class.
Status MarkClicks(const std::vector<Click>& clicks, int64_t num_classes, TrainingExample& ex) {
  const int64_t h = ex.target.size(0), w = ex.target.size(1);
  auto target = ex.target.accessor<int64_t, 2>();
  auto known = ex.known.accessor<bool, 2>();
  for (size_t i = 0; i < clicks.size(); ++i) {
    const Click& c = clicks[i];
    const std::string where = "click " + std::to_string(i) + " at (x=" + std::to_string(c.x) +
                              ", y=" + std::to_string(c.y) + ")";
    if (c.x < 0 || c.y < 0 || c.x >= w || c.y >= h) {
      return InvalidArgument(where + " lies outside the " + std::to_string(w) + "x" +
                             std::to_string(h) + " image");
    }
    if (c.positive && (c.class_id < 1 || c.class_id >= num_classes)) {
      return InvalidArgument(where + ": class " + std::to_string(c.class_id) + " is not in [1, " +
                             std::to_string(num_classes) + ")");
    }
    target[c.y][c.x] = c.positive ? c.class_id : 0;
    known[c.y][c.x] = true;
  }
  return Status::Ok();
}

// The click map `clicks` with `ids` on its unclicked pixels, except the click regions
// (LabelUnclicked). Ties between classes go to the lower class id.
TrainingExample WithClickRegions(const TrainingExample& clicks, const torch::Tensor& ids,
                                 int64_t num_classes) {
  TrainingExample ex = clicks;
  const auto known = clicks.known.to(torch::kBool);
  // Around each click, what the click says beats the mask: the mask was drawn before the click
  // could teach anything, and a lone click pixel inside a region the mask gets wrong would
  // otherwise train against the whole region.
  const auto distances = ClickDistances(clicks.image, clicks.target, known, num_classes);
  const auto [nearest, click_class] = distances.min(0);
  const auto near_click = nearest.le(ClickRegionRadius(std::max(ids.size(0), ids.size(1))));
  ex.target =
      torch::where(known, clicks.target,
                   torch::where(near_click.to(ids.device()), click_class.to(ids.device()), ids));
  return ex;
}

}  // namespace

Result<TrainingExample> MakeClickExample(const torch::Tensor& image,
                                         const std::vector<Click>& clicks, int64_t num_classes) {
  CLICKDIFF_RETURN_IF_ERROR(CheckImage(image));
  const int64_t h = image.size(1), w = image.size(2);
  TrainingExample ex;
  ex.image = image;
  ex.target = torch::zeros({h, w}, torch::kLong);
  ex.known = torch::zeros({h, w}, torch::kBool);
  ex.clicks_as_input = true;
  CLICKDIFF_RETURN_IF_ERROR(MarkClicks(clicks, num_classes, ex));
  return ex;
}

double ClickRegionRadius(int64_t resolution) { return GeodesicGuidanceSigma(resolution) / 2; }

Result<TrainingExample> LabelUnclicked(const TrainingExample& clicks, const torch::Tensor& mask,
                                       int64_t num_classes) {
  if (clicks.dense || clicks.partial || !clicks.known.defined() || !clicks.target.defined()) {
    return InvalidArgument("only a click map's unclicked pixels can take a mask's labels");
  }
  CLICKDIFF_RETURN_IF_ERROR(CheckImage(clicks.image));
  Result<torch::Tensor> ids = CheckMask(clicks.image, mask, num_classes, "unclicked pixels' mask");
  if (!ids.ok()) return ids.status();
  try {
    return WithClickRegions(clicks, *ids, num_classes);
  } catch (const std::exception& e) {
    return Internal(std::string("labelling the unclicked pixels failed: ") + e.what());
  }
}

Result<TrainingExample> MakeDenseExample(const torch::Tensor& image, const torch::Tensor& mask,
                                         int64_t num_classes) {
  CLICKDIFF_RETURN_IF_ERROR(CheckImage(image));
  Result<torch::Tensor> checked = CheckMask(image, mask, num_classes, "dense mask");
  if (!checked.ok()) return checked.status();
  const torch::Tensor ids = *checked;
  TrainingExample ex;
  ex.image = image;
  ex.target = ids;
  ex.known = torch::ones_like(ids, torch::kBool);
  ex.dense = true;
  return ex;
}

Result<TrainingExample> MakePartialExample(const torch::Tensor& image, const torch::Tensor& labels,
                                           const std::vector<Click>& clicks, int64_t num_classes) {
  CLICKDIFF_RETURN_IF_ERROR(CheckImage(image));
  Result<torch::Tensor> checked =
      CheckMask(image, labels, num_classes, "partial label map", /*unknown_allowed=*/true);
  if (!checked.ok()) return checked.status();
  TrainingExample ex;
  ex.image = image;
  ex.known = checked->ne(kUnknownClass).contiguous();
  ex.target = torch::where(ex.known, *checked, 0).contiguous();
  ex.partial = true;
  CLICKDIFF_RETURN_IF_ERROR(MarkClicks(clicks, num_classes, ex));
  if (!ex.known.any().item<bool>()) {
    return InvalidArgument("partial label map labels no pixel (every value is 255, unknown)");
  }
  return ex;
}

Result<std::optional<TrainingExample>> MakeSupervisedExample(const torch::Tensor& image,
                                                             const std::vector<Click>& clicks,
                                                             const torch::Tensor& mask,
                                                             int64_t num_classes, bool partial) {
  if (mask.defined() && partial) {
    Result<TrainingExample> scribbled = MakePartialExample(image, mask, clicks, num_classes);
    if (!scribbled.ok()) return scribbled.status();
    return std::optional<TrainingExample>(std::move(scribbled).value());
  }
  if (mask.defined()) {
    Result<TrainingExample> dense = MakeDenseExample(image, mask, num_classes);
    if (!dense.ok()) return dense.status();
    return std::optional<TrainingExample>(std::move(dense).value());
  }
  if (clicks.empty()) return std::optional<TrainingExample>();
  Result<TrainingExample> sparse = MakeClickExample(image, clicks, num_classes);
  if (!sparse.ok()) return sparse.status();
  return std::optional<TrainingExample>(std::move(sparse).value());
}

}  // namespace clickdiff::model
