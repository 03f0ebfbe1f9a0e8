#include "nodes/stale_masks.h"

#include <algorithm>

#include "io/keys.h"
#include "nodes/intake.h"

namespace clickdiff {
namespace {

// How many clicks an image has (its click revision) and when the latest was sent.
struct ClickSummary {
  uint64_t count = 0;
  int64_t last_ms = 0;
};

Result<ClickSummary> ClicksOf(const Store& store, const std::string& image_key) {
  ClickSummary summary;
  Status scanned = store.Scan(
      Family::kClicks, keys::Under(image_key), [&](std::string_view, std::string_view value) {
        ++summary.count;
        v1::ClickEvent click;
        if (click.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          summary.last_ms = std::max(summary.last_ms, click.timestamp_ms());
        }
        return true;
      });
  if (!scanned.ok()) return scanned;
  return summary;
}

double MeanUncertainty(const v1::MaskResult& mask) {
  const std::string& u = mask.uncertainty();
  if (u.empty()) return 1;
  double sum = 0;
  for (unsigned char b : u) sum += b;
  return sum / (255.0 * static_cast<double>(u.size()));
}

}  // namespace

StaleMasks::StaleMasks(const Store* store, const MaskCache* cache) : store_(store), cache_(cache) {}

Result<std::vector<InferRequest>> StaleMasks::operator()(uint64_t version) const {
  std::vector<InferRequest> stale;
  Status scanned =
      store_->Scan(Family::kImages, "", [&](std::string_view key, std::string_view value) {
        v1::StoredImage image;
        if (!image.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
        const v1::ImageEvent& e = image.event();
        Result<std::optional<v1::MaskResult>> current = cache_->Current(e.dataset(), e.image_id());
        Result<ClickSummary> clicks = ClicksOf(*store_, std::string(key));
        if (!current.ok() || !clicks.ok() || !current->has_value() ||
            (*current)->click_revision() != clicks->count) {
          stale.push_back(RequestFor(e.dataset(), e.image_id(), kPriorityStale));
        } else if ((*current)->model_version() != version) {
          stale.push_back(RequestFor(
              e.dataset(), e.image_id(),
              clicks->count > 0 ? ClickedPriority(clicks->last_ms) : MeanUncertainty(**current)));
        }
        return true;
      });
  if (!scanned.ok()) return scanned;
  return stale;
}

}  // namespace clickdiff
