#include "nodes/sampler.h"

#include <functional>

#include "base/guard.h"
#include "io/keys.h"
#include "learning/replay.h"

namespace clickdiff {

Sampler::Sampler(Store* store, const ModelSlot* models, InferRequestGate* gate,
                 const MaskCache* cache, const SamplerConfig& config)
    : store_(store), models_(models), gate_(gate), cache_(cache), config_(config) {}

Result<PreparedRequest> Sampler::Prepare(const InferRequest& request) const {
  gate_->Started(request);
  std::shared_ptr<const ServingModel> model = models_->Get();
  if (!model || !model->segmenter) return FailedPrecondition("no model is loaded");
  const std::string key = keys::Image(request.dataset, request.image_id);
  Result<std::optional<std::string>> bytes = store_->Get(Family::kImages, key);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) {
    return NotFound("image " + request.dataset + "/" + request.image_id + " is not stored");
  }
  v1::StoredImage stored;
  if (!stored.ParseFromString(**bytes)) {
    return DataLoss("the stored record of image " + request.image_id + " is corrupt");
  }
  const int64_t r = model->segmenter->options().resolution;
  if (stored.grid_resolution() != r) {
    return FailedPrecondition("image " + request.image_id + " was stored at grid " +
                              std::to_string(stored.grid_resolution()) +
                              " but the model works at " + std::to_string(r));
  }
  Result<model::GridMapping> mapping = StoredGridMapping(stored);
  if (!mapping.ok()) return mapping.status();
  // A corrupt click still counts in the revision (the cache and the annotator key on it) but is
  // neither shown nor imposed: one bad record must not stop the image's masks.
  uint64_t corrupt = 0;
  Result<std::vector<model::Click>> clicks = StoredClicks(*store_, key, request.image_id, &corrupt);
  if (!clicks.ok()) return clicks.status();
  const uint64_t revision = clicks->size() + corrupt;

  PreparedRequest prepared;
  SampleSet& out = prepared.set;
  out.request = request;
  out.model_version = model->version;
  out.click_revision = revision;
  out.preview = request.preview;
  out.mapping = *mapping;
  prepared.samples = request.preview ? config_.preview_samples : config_.samples;
  prepared.steps = request.preview ? config_.preview_steps : config_.steps;
  out.steps = static_cast<uint32_t>(prepared.steps);
  Result<std::optional<v1::MaskResult>> hit =
      cache_->Lookup(request.dataset, request.image_id, model->version, revision);
  if (!hit.ok()) return hit.status();
  if (hit->has_value()) {
    out.cached = std::move(*hit);
    return prepared;
  }
  Result<torch::Tensor> grid = StoredGrid(stored, model->segmenter->options().unet.image_channels);
  if (!grid.ok()) return grid.status();
  prepared.grid = grid->unsqueeze(0);
  out.grid = *grid;
  prepared.model = std::move(model);
  prepared.grid_clicks = model::ClicksToGrid(*clicks, *mapping);
  out.clicks = std::move(clicks).value();
  prepared.seed = std::hash<std::string>{}(key) ^ (revision * 0x9E3779B97F4A7C15ull) ^
                  (out.model_version << 32) ^ (request.preview ? 0x94D049BB133111EBull : 0);
  out.image = std::move(*stored.mutable_event());  // payload kept: the mask snaps to its edges
  return prepared;
}

int64_t Sampler::ShardSamples(int64_t samples, int64_t shard, int64_t shards) {
  return samples / shards + (shard < samples % shards ? 1 : 0);
}

Result<torch::Tensor> Sampler::Draw(const PreparedRequest& prepared, int64_t shard,
                                    int64_t shards) const {
  // Shard 0 keeps the request's seed, so one shard draws what an unsharded sampler does.
  const uint64_t seed = prepared.seed ^ (static_cast<uint64_t>(shard) * 0xD1B54A32D192ED03ull);
  const int64_t n = ShardSamples(prepared.samples, shard, shards);
  if (n == 0) {
    const int64_t r = prepared.grid.size(-1);
    return torch::empty({0, r, r}, torch::kLong);
  }
  return Guarded("sampling " + prepared.set.request.image_id, [&]() -> Result<torch::Tensor> {
    Result<torch::Tensor> drawn = prepared.model->ForShard(shard).Sample(
        prepared.grid, n, prepared.steps, seed, config_.memory_budget_mb, {prepared.grid_clicks});
    if (!drawn.ok()) return drawn.status().WithContext(prepared.set.request.image_id);
    return (*drawn)[0];
  });
}

Result<SampleSet> Sampler::operator()(const InferRequest& request) const {
  Result<PreparedRequest> prepared = Prepare(request);
  if (!prepared.ok()) return prepared.status();
  if (prepared->set.cached.has_value()) return std::move(prepared->set);
  Result<torch::Tensor> samples = Draw(*prepared, 0, 1);
  if (!samples.ok()) return samples.status();
  prepared->set.samples = std::move(samples).value();
  return std::move(prepared->set);
}

}  // namespace clickdiff
