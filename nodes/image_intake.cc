#include "nodes/image_intake.h"

#include <spdlog/spdlog.h>

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
  // A stored record that does not parse is repaired by the image sent again, not kept.
  const bool repair = existing->has_value() && !v1::StoredImage().ParseFromString(**existing);
  if (existing->has_value() && !repair) {
    outcome.duplicate = true;
  } else {
    if (repair) {
      spdlog::warn("the stored record of image {}/{} is corrupt: replaced by the one received",
                   event.dataset(), event.image_id());
    }
    batch.Put(Family::kImages, key, image.stored.SerializeAsString());
    if (Status s = clicks_->AdoptPending(event, batch); !s.ok()) {
      outcome.failure = s;
      return outcome;
    }
    outcome.infer.push_back(RequestFor(event.dataset(), event.image_id()));
  }
  WriteOrFail(*store_, batch, outcome);
  if (repair && outcome.failure.ok()) outcome.added.images -= 1;  // counted when first stored
  return outcome;
}

}  // namespace clickdiff
