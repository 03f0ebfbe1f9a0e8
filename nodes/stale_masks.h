// nodes/stale_masks.h — which stored images need their mask drawn again, and how urgently: at
// start (after a restart or a crash) and after each new model version.
//
// An image whose cached mask is missing, or was drawn before the image's last click, comes first
// (kPriorityStale); one whose mask is merely of another model version follows: clicked images
// first, the one clicked last first (ClickedPriority of its latest click's timestamp_ms), so the
// image an annotator is working on shows what its clicks taught the new version before the sweep
// goes on; then the unclicked, the most uncertain first (priority = the mask's mean uncertainty,
// in [0, 1]). A mask of this version and click revision is current and not asked for. Reads the
// store; safe from any thread.
#pragma once

#include <cstdint>
#include <vector>

#include "io/store.h"
#include "nodes/mask_cache.h"
#include "nodes/messages.h"

namespace clickdiff {

class StaleMasks {
 public:
  // Neither is owned; both must outlive this.
  StaleMasks(const Store* store, const MaskCache* cache);
  // The requests for model version `version`, in store order (the samplers order them by
  // priority). Errors: the store's.
  Result<std::vector<InferRequest>> operator()(uint64_t version) const;

 private:
  const Store* store_;
  const MaskCache* cache_;
};

}  // namespace clickdiff
