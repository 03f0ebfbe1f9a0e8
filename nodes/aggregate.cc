#include "nodes/aggregate.h"

#include <cmath>

#include "nodes/intake.h"

namespace clickdiff {

Aggregate::Aggregate(Aggregator aggregator, std::string rule_name)
    : aggregator_(std::move(aggregator)), rule_name_(std::move(rule_name)) {}

Result<v1::MaskResult> Aggregate::operator()(const SampleSet& set) const {
  auto latency_ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                     set.request.requested)
        .count();
  };
  if (set.cached.has_value()) {
    v1::MaskResult mask = *set.cached;
    mask.set_latency_ms(latency_ms());
    mask.set_timestamp_ms(NowMs());
    return mask;
  }
  try {
    const int64_t r = set.samples.size(-1);
    Result<GridMapping> mapping = MakeGridMapping(set.image.width(), set.image.height(), r);
    if (!mapping.ok()) return mapping.status();
    Result<Aggregation> result = aggregator_.AggregateOnImage(set.samples, *mapping);
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
    out.set_aggregation(rule_name_);
    out.set_latency_ms(latency_ms());
    out.set_timestamp_ms(NowMs());
    return out;
  } catch (const std::exception& e) {
    return Internal("aggregating " + set.image.image_id() + ": " + e.what());
  }
}

}  // namespace clickdiff
