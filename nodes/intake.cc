#include "nodes/intake.h"

#include <chrono>

namespace clickdiff {

void AdvanceOffset(Store::Batch& batch, const KafkaMessage& source) {
  batch.SetOffset(source.topic, source.partition, source.offset + 1);
}

void WriteOrFail(Store& store, Store::Batch& batch, IntakeOutcome& outcome) {
  if (Status s = store.Write(batch); !s.ok()) {
    outcome = IntakeOutcome{};
    outcome.failure = s;
    return;
  }
  outcome.added.images += batch.Puts(Family::kImages);
  outcome.added.clicks += batch.Puts(Family::kClicks);
  outcome.added.labels += batch.Puts(Family::kLabels);
}

InferRequest RequestFor(const std::string& dataset, const std::string& image_id, double priority) {
  return InferRequest{dataset, image_id, std::chrono::steady_clock::now(), priority};
}

InferRequest PreviewFor(const std::string& dataset, const std::string& image_id) {
  InferRequest request = RequestFor(dataset, image_id, kPriorityPreview);
  request.preview = true;
  return request;
}

}  // namespace clickdiff
