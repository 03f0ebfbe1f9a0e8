#include "nodes/mask_cache.h"

#include "io/keys.h"

namespace clickdiff {

MaskCache::MaskCache(Store* store) : store_(store) {}

Status MaskCache::operator()(const v1::MaskResult& mask) const {
  Store::Batch batch;
  batch.Put(Family::kMasks, keys::Image(mask.dataset(), mask.image_id()), mask.SerializeAsString());
  return store_->Write(batch);
}

Result<std::optional<v1::MaskResult>> MaskCache::Current(const std::string& dataset,
                                                         const std::string& image_id) const {
  Result<std::optional<std::string>> bytes =
      store_->Get(Family::kMasks, keys::Image(dataset, image_id));
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::optional<v1::MaskResult>();
  v1::MaskResult mask;
  if (!mask.ParseFromString(**bytes)) {
    return DataLoss("the cached mask of " + dataset + "/" + image_id + " is corrupt");
  }
  return std::optional<v1::MaskResult>(std::move(mask));
}

Result<std::optional<v1::MaskResult>> MaskCache::Lookup(const std::string& dataset,
                                                        const std::string& image_id,
                                                        uint64_t model_version,
                                                        uint64_t click_revision) const {
  Result<std::optional<v1::MaskResult>> current = Current(dataset, image_id);
  if (!current.ok() || !current->has_value()) return current;
  const v1::MaskResult& mask = **current;
  if (mask.model_version() != model_version || mask.click_revision() != click_revision) {
    return std::optional<v1::MaskResult>();
  }
  return current;
}

}  // namespace clickdiff
