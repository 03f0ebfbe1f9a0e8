// nodes/aggregate.h — joins an image's N samples into the published result: the mask at the
// image's own size (the configured rule: majority, threshold or smoothed vote density; its
// boundaries snapped to the image's edges, decoded again from the event's payload; click
// corrections) and its uncertainty map (vote entropy), as a MaskResult tagged with model version
// and click revision.
#pragma once

#include "model/aggregator.h"
#include "nodes/messages.h"

namespace clickdiff {

// Stateless apart from the rule; safe under tbb::flow::unlimited.
class Aggregate {
 public:
  explicit Aggregate(model::Aggregator aggregator);
  // A cached result passes through with a fresh latency. Errors: the aggregator's; never throws.
  Result<v1::MaskResult> operator()(const SampleSet& set) const;

 private:
  Result<v1::MaskResult> Draw(const SampleSet& set) const;
  // The image's pixels [C,H,W] from its event's payload, for the mask's edges; undefined when
  // aggregator.edge_band is 0, the payload is empty or it no longer decodes (a warning).
  torch::Tensor EdgeImage(const v1::ImageEvent& image) const;

  model::Aggregator aggregator_;
};

}  // namespace clickdiff
