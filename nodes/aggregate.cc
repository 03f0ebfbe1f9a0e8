#include "nodes/aggregate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "base/clock.h"
#include "base/guard.h"
#include "nodes/decode.h"

namespace clickdiff {

namespace {

double LatencyMs(const SampleSet& set) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                   set.request.requested)
      .count();
}

}  // namespace

torch::Tensor Aggregate::EdgeImage(const v1::ImageEvent& image) const {
  if (aggregator_.options().edge_band <= 0 || image.payload().empty()) return {};
  // The image passed this decoder when it arrived (within its own size), so a failure here is a
  // damaged record: its masks keep the grid's edges rather than fail.
  Result<Image> pixels =
      DecodePixels(image, static_cast<int>(std::max(image.width(), image.height())));
  if (!pixels.ok()) {
    spdlog::warn("image {}: {}; its masks keep the grid's edges", image.image_id(),
                 pixels.status().message());
    return {};
  }
  return model::ImageTensor(pixels->pixels.data(), pixels->width, pixels->height, pixels->channels);
}

Aggregate::Aggregate(model::Aggregator aggregator) : aggregator_(std::move(aggregator)) {}

Result<v1::MaskResult> Aggregate::operator()(const SampleSet& set) const {
  if (set.cached.has_value()) {
    v1::MaskResult mask = *set.cached;
    mask.set_latency_ms(LatencyMs(set));
    mask.set_timestamp_ms(NowMs());
    return mask;
  }
  return Guarded("aggregating " + set.image.image_id(), [&] { return Draw(set); });
}

Result<v1::MaskResult> Aggregate::Draw(const SampleSet& set) const {
  Result<model::Aggregation> result = aggregator_.AggregateOnImage(
      set.samples, set.mapping, set.clicks, set.grid, EdgeImage(set.image));
  if (!result.ok()) return result.status().WithContext(set.image.image_id());
  torch::Tensor mask = result->mask.to(torch::kUInt8).contiguous();
  torch::Tensor uncertainty = (result->uncertainty.to(torch::kFloat32).clamp(0, 1) * 255)
                                  .round()
                                  .to(torch::kUInt8)
                                  .contiguous();
  v1::MaskResult out;
  out.set_dataset(set.image.dataset());
  out.set_image_id(set.image.image_id());
  out.set_width(set.image.width());
  out.set_height(set.image.height());
  out.set_mask(mask.data_ptr<uint8_t>(), mask.numel());
  out.set_uncertainty(uncertainty.data_ptr<uint8_t>(), uncertainty.numel());
  out.set_model_version(set.model_version);
  out.set_click_revision(set.click_revision);
  out.set_samples(static_cast<uint32_t>(set.samples.size(0)));
  out.set_steps(set.steps);
  out.set_preview(set.preview);
  out.set_aggregation(model::AggregationRuleName(aggregator_.options().rule));
  out.set_latency_ms(LatencyMs(set));
  out.set_timestamp_ms(NowMs());
  return out;
}

}  // namespace clickdiff
