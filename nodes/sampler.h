// nodes/sampler.h — draws N mask samples for one image with the model version being served, whole
// or as shards that sampler threads draw in parallel. The image's grid and its click revision are
// read from the store when the work starts; sampling is seeded by image, click revision, model
// version and shard, so a request repeated unchanged draws the same samples. The image's clicks go
// with it: a click_input model is shown them, and every mask holds them (Segmenter::Sample).
#pragma once

#include <memory>

#include "config/config.h"
#include "io/store.h"
#include "learning/model_slot.h"
#include "nodes/infer_request.h"
#include "nodes/mask_cache.h"

namespace clickdiff {

// A request pinned to what it is drawn with when it starts: the model version being served, the
// image's grid and click revision, and the seed. When the cache already holds the mask for that
// version and revision, set.cached is filled instead and there is nothing to draw.
struct PreparedRequest {
  SampleSet set;  // everything but the samples
  std::shared_ptr<const ServingModel> model;
  torch::Tensor grid;                     // [1,C,R,R], C the model's image channels
  std::vector<model::Click> grid_clicks;  // the image's clicks on the grid: shown to the model
  uint64_t seed = 0;
  int64_t samples = 0;  // N: sampler.samples, or sampler.preview_samples for a preview
  int steps = 0;        // sampler.steps, or sampler.preview_steps
};

// What sampler threads (nodes/sampler_pool.h) draw from: a request is prepared once, then its
// shards are drawn, possibly on different threads at once. Implementations are thread-safe and
// never throw.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual Result<PreparedRequest> Prepare(const InferRequest& request) const = 0;
  // Shard `shard` of `shards` of the request's samples, [n,R,R].
  virtual Result<torch::Tensor> Draw(const PreparedRequest& prepared, int64_t shard,
                                     int64_t shards) const = 0;
};

// Thread-safe: several sampler threads may share one (Segmenter::Sample is const). Store, slot,
// gate and cache are not owned.
class Sampler : public SampleSource {
 public:
  // config: N samples (`samples`), denoising `steps` (0: the method's T), `memory_budget_mb`; a
  // preview request (InferRequest::preview) draws `preview_samples` of `preview_steps` instead,
  // with a seed of its own, unless the cache already holds the final mask.
  Sampler(Store* store, const ModelSlot* models, InferRequestGate* gate, const MaskCache* cache,
          const SamplerConfig& config);
  // Errors: the image is not stored, no model is loaded, or sampling failed. A cache hit for the
  // current model version and click revision returns the cached mask instead of samples.
  // Prepare, then the one shard of all N samples.
  Result<SampleSet> operator()(const InferRequest& request) const;

  // Marks the request started at the gate, pins it, looks up the cache. Errors as above.
  Result<PreparedRequest> Prepare(const InferRequest& request) const override;
  // Shard `shard` of `shards` of the N samples: ShardSamples(N, shard, shards) samples, [n,R,R]
  // (n may be 0 when a preview has fewer samples than there are shards),
  // drawn with the pinned model's copy for the shard (ServingModel::ForShard: the serving devices
  // in turn) and a seed of their own (shard 0 keeps the request's). Shards are independent draws
  // from the same weights, so together they are N samples distributed exactly as one sampler's N;
  // any shard may run on any thread.
  Result<torch::Tensor> Draw(const PreparedRequest& prepared, int64_t shard,
                             int64_t shards) const override;
  // N / shards, plus one for the first N % shards shards.
  static int64_t ShardSamples(int64_t samples, int64_t shard, int64_t shards);

 private:
  Store* store_;
  const ModelSlot* models_;
  InferRequestGate* gate_;
  const MaskCache* cache_;
  SamplerConfig config_;
};

}  // namespace clickdiff
