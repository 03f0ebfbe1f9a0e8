#include "nodes/stale_masks.h"

#include "io/keys.h"
#include "nodes/intake.h"

namespace clickdiff {

StaleMasks::StaleMasks(const Store* store, const MaskCache* cache) : store_(store), cache_(cache) {}

Result<std::vector<InferRequest>> StaleMasks::operator()(uint64_t version) const {
  std::vector<InferRequest> stale;
  Status scanned =
      store_->Scan(Family::kImages, "", [&](std::string_view key, std::string_view value) {
        v1::StoredImage image;
        if (!image.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
        const v1::ImageEvent& e = image.event();
        Result<std::optional<v1::MaskResult>> current = cache_->Current(e.dataset(), e.image_id());
        Result<uint64_t> revision = store_->Count(Family::kClicks, keys::Under(std::string(key)));
        if (!current.ok() || !revision.ok() || !current->has_value() ||
            (*current)->click_revision() != *revision) {
          stale.push_back(RequestFor(e.dataset(), e.image_id(), kPriorityStale));
        } else if ((*current)->model_version() != version) {
          const std::string& u = (*current)->uncertainty();
          double sum = 0;
          for (unsigned char b : u) sum += b;
          stale.push_back(
              RequestFor(e.dataset(), e.image_id(),
                         u.empty() ? 1 : sum / (255.0 * static_cast<double>(u.size()))));
        }
        return true;
      });
  if (!scanned.ok()) return scanned;
  return stale;
}

}  // namespace clickdiff
