#include "nodes/intake.h"

#include <chrono>

namespace clickdiff {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void AdvanceOffset(Store::Batch& batch, const KafkaMessage& source) {
  batch.SetOffset(source.topic, source.partition, source.offset + 1);
}

void WriteOrFail(Store& store, Store::Batch& batch, IntakeOutcome& outcome) {
  if (Status s = store.Write(batch); !s.ok()) {
    outcome = IntakeOutcome{};
    outcome.failure = s;
  }
}

InferRequest RequestFor(const std::string& dataset, const std::string& image_id, double priority) {
  return InferRequest{dataset, image_id, std::chrono::steady_clock::now(), priority};
}

}  // namespace clickdiff
