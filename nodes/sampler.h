// nodes/sampler.h — draws N mask samples for one image with the model version being served. The
// image's grid and its click revision are read from the store when the work starts; sampling is
// seeded by image, click revision and model version, so a request repeated unchanged draws the
// same samples.
#pragma once

#include "io/store.h"
#include "nodes/infer_request.h"
#include "nodes/mask_cache.h"
#include "nodes/model_slot.h"

namespace clickdiff {

struct SamplerOptions {
  int64_t samples = 16;
  int64_t steps = 50;  // 0: the method's T
  int64_t memory_budget_mb = 512;
};

// Thread-safe: several sampler threads may share one (Segmenter::Sample is const). Store, slot and
// gate are not owned.
class Sampler {
 public:
  Sampler(Store* store, const ModelSlot* models, InferRequestGate* gate, const MaskCache* cache,
          SamplerOptions options);
  // Errors: the image is not stored, no model is loaded, or sampling failed. A cache hit for the
  // current model version and click revision returns the cached mask instead of samples.
  Result<SampleSet> operator()(const InferRequest& request) const;

 private:
  Store* store_;
  const ModelSlot* models_;
  InferRequestGate* gate_;
  const MaskCache* cache_;
  SamplerOptions options_;
};

}  // namespace clickdiff
