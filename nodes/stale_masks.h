// nodes/stale_masks.h — which stored images need their mask drawn again, and how urgently: at
// start (after a restart or a crash) and after each new model version.
//
// An image whose cached mask is missing, or was drawn before the image's last click, comes first
// (kPriorityStale); one whose mask is merely of another model version follows: clicked images
// first, the one clicked last first (ClickedPriority of its latest click's timestamp_ms), so the
// image an annotator is working on shows what its clicks taught the new version before the sweep
// goes on; then the unclicked, the most uncertain first (priority = the mask's mean uncertainty,
// in [0, 1]). A mask of this version and click revision is current and not asked for.
//
// A sweep is read in pages, so a store of a million images never has a million requests waiting:
// each page is the next `limit` stale images in sweep order (priority, highest first, then key),
// found by one pass over the stored images' keys, cached masks and clicks (an image's record is
// not parsed: an unreadable one is asked for, and its sampler reports it) that keeps only the best
// `limit`. The pages of one sweep see the store as it is when each is read: an image
// whose priority rose past the cursor since (a new click) has been asked for by its click already,
// and a mask drawn meanwhile is current and left out. Reads the store; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/store.h"
#include "nodes/mask_cache.h"
#include "nodes/messages.h"

namespace clickdiff {

// Where a sweep stands: the last request a page handed out.
struct SweepCursor {
  double priority = 0;
  std::string key;  // the image's key (io/keys.h)
};

struct SweepPage {
  std::vector<InferRequest> requests;  // in sweep order
  // The cursor after this page; nullopt when the sweep is complete.
  std::optional<SweepCursor> next;
};

class StaleMasks {
 public:
  // Neither is owned; both must outlive this.
  StaleMasks(const Store* store, const MaskCache* cache);
  // The next at most `limit` requests for model version `version` after `after` (nullopt: from
  // the start) in sweep order (a limit of 0 counts as 1). Errors: the store's.
  Result<SweepPage> Page(uint64_t version, const std::optional<SweepCursor>& after,
                         size_t limit) const;

 private:
  const Store* store_;
  const MaskCache* cache_;
};

}  // namespace clickdiff
