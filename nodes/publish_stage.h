// nodes/publish_stage.h — the graph's last stage: a finished mask becomes the image's current
// mask (nodes/mask_cache.h), goes to subscribers (nodes/publisher.h) and is scored when the image
// has an evaluation label (nodes/evaluator.h).
//
// Two sampler threads may draw one image at once (a click arrived while it was sampled): a mask
// drawn for an older (model version, click revision) than the cached one is dropped, so it never
// replaces the newer. A preview (MaskResult.preview) goes to subscribers only: it is not cached
// (the image's current mask stays the last final one) nor scored, and it is dropped once a final
// mask reflects as many clicks, whatever its model version. A final mask drawn with clicks is
// also a label the trainer reads (learning/replay.h, ReplayExample::served): `on_mask_stored` is
// told its image key once it is cached. Run it serially (one flow::serial
// node): it reads then writes the cache, and the evaluator keeps running sums.
#pragma once

#include <functional>
#include <string>

#include "nodes/evaluator.h"
#include "nodes/mask_cache.h"
#include "nodes/publisher.h"

namespace clickdiff {

struct PublishOutcome {
  bool published = false;  // false: dropped as older than the cached mask
  bool preview = false;    // published as a preview
  bool evaluated = false;  // scored against an evaluation label
};

class PublishStage {
 public:
  using OnMaskStored = std::function<void(const std::string& image_key)>;
  // None is owned; all must outlive the stage. `on_mask_stored` may be empty; it must not block.
  PublishStage(const MaskCache* cache, const Publisher* publisher, Evaluator* evaluator,
               OnMaskStored on_mask_stored = {});
  // Never throws: failures of the cache, the publisher or the evaluator are logged (the mask still
  // goes out when only caching or scoring failed).
  PublishOutcome operator()(const v1::MaskResult& mask) const;

 private:
  const MaskCache* cache_;
  const Publisher* publisher_;
  Evaluator* evaluator_;
  OnMaskStored on_mask_stored_;
};

}  // namespace clickdiff
