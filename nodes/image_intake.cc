#include "nodes/image_intake.h"

#include "io/keys.h"

namespace clickdiff {

ImageIntake::ImageIntake(Store* store, const ClickIntake* clicks)
    : store_(store), clicks_(clicks) {}

IntakeOutcome ImageIntake::operator()(const ImageRecord& image, const KafkaMessage& source) const {
  IntakeOutcome outcome;
  const v1::ImageEvent& event = image.stored.event();
  const std::string key = keys::Image(event.dataset(), event.image_id());
  Result<std::optional<std::string>> existing = store_->Get(Family::kImages, key);
  if (!existing.ok()) {
    outcome.failure = existing.status();
    return outcome;
  }
  Store::Batch batch;
  AdvanceOffset(batch, source);
  if (existing->has_value()) {
    outcome.duplicate = true;
  } else {
    batch.Put(Family::kImages, key, image.stored.SerializeAsString());
    if (Status s = clicks_->AdoptPending(event, batch); !s.ok()) {
      outcome.failure = s;
      return outcome;
    }
    outcome.infer.push_back(RequestFor(event.dataset(), event.image_id()));
  }
  WriteOrFail(*store_, batch, outcome);
  return outcome;
}

}  // namespace clickdiff
