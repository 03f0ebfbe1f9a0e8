#include "nodes/sampler.h"

#include <functional>

#include "nodes/keys.h"

namespace clickdiff {

Sampler::Sampler(Store* store, const ModelSlot* models, InferRequestGate* gate,
                 const MaskCache* cache, SamplerOptions options)
    : store_(store), models_(models), gate_(gate), cache_(cache), options_(options) {}

Result<SampleSet> Sampler::operator()(const InferRequest& request) const {
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
  if (stored.grid_resolution() != r || stored.grid_size() != r * r) {
    return FailedPrecondition("image " + request.image_id + " was stored at grid " +
                              std::to_string(stored.grid_resolution()) +
                              " but the model works at " + std::to_string(r));
  }
  Result<uint64_t> revision = store_->Count(Family::kClicks, keys::Under(key));
  if (!revision.ok()) return revision.status();

  SampleSet out;
  out.request = request;
  out.model_version = model->version;
  out.click_revision = *revision;
  out.steps = static_cast<uint32_t>(options_.steps);
  Result<std::optional<v1::MaskResult>> hit =
      cache_->Lookup(request.dataset, request.image_id, model->version, *revision);
  if (!hit.ok()) return hit.status();
  if (hit->has_value()) {
    out.cached = std::move(*hit);
    return out;
  }
  const uint64_t seed =
      std::hash<std::string>{}(key) ^ (*revision * 0x9E3779B97F4A7C15ull) ^ (model->version << 32);
  try {
    torch::Tensor grid =
        torch::from_blob(stored.mutable_grid()->mutable_data(), {1, 1, r, r}, torch::kFloat32)
            .clone();
    Result<torch::Tensor> drawn = model->segmenter->Sample(grid, options_.samples, options_.steps,
                                                           seed, options_.memory_budget_mb);
    if (!drawn.ok()) return drawn.status().WithContext(request.image_id);
    out.samples = (*drawn)[0];
  } catch (const std::exception& e) {
    return Internal("sampling " + request.image_id + ": " + e.what());
  }
  stored.mutable_event()->clear_payload();
  out.image = std::move(*stored.mutable_event());
  return out;
}

}  // namespace clickdiff
