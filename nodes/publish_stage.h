// nodes/publish_stage.h — the graph's last stage: a finished mask becomes the image's current
// mask (nodes/mask_cache.h), goes to subscribers (nodes/publisher.h) and is scored when the image
// has an evaluation label (nodes/evaluator.h).
//
// Two sampler threads may draw one image at once (a click arrived while it was sampled): a mask
// drawn for an older (model version, click revision) than the cached one is dropped, so it never
// replaces the newer. A preview (MaskResult.preview) goes to subscribers only: it is not cached
// (the image's current mask stays the last final one) nor scored, and it is dropped once a final
// mask reflects as many clicks, whatever its model version. Run it serially (one flow::serial
// node): it reads then writes the cache, and the evaluator keeps running sums.
#pragma once

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
  // None is owned; all must outlive the stage.
  PublishStage(const MaskCache* cache, const Publisher* publisher, Evaluator* evaluator);
  // Never throws: failures of the cache, the publisher or the evaluator are logged (the mask still
  // goes out when only caching or scoring failed).
  PublishOutcome operator()(const v1::MaskResult& mask) const;

 private:
  const MaskCache* cache_;
  const Publisher* publisher_;
  Evaluator* evaluator_;
};

}  // namespace clickdiff
