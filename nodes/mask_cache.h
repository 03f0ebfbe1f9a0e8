// nodes/mask_cache.h — the latest mask of every image, in the store's "masks" family, tagged with
// the model version and click revision it was drawn for. A request whose image has neither a new
// click nor a new model version is answered from here without sampling; the publisher's
// current-mask table is seeded from here at start.
#pragma once

#include "io/store.h"
#include "schemas/events.pb.h"

namespace clickdiff {

// Thread-safe (the store is). The store is not owned.
class MaskCache {
 public:
  explicit MaskCache(Store* store);
  // Stores `mask` as its image's current one. Errors: the store's.
  Status operator()(const v1::MaskResult& mask) const;
  // The cached mask when it was drawn for exactly this model version and click revision.
  Result<std::optional<v1::MaskResult>> Lookup(const std::string& dataset,
                                               const std::string& image_id, uint64_t model_version,
                                               uint64_t click_revision) const;
  // The current mask whatever its version; nullopt when the image has none.
  Result<std::optional<v1::MaskResult>> Current(const std::string& dataset,
                                                const std::string& image_id) const;

 private:
  Store* store_;
};

}  // namespace clickdiff
