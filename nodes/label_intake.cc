#include "nodes/label_intake.h"

#include "nodes/keys.h"

namespace clickdiff {

LabelIntake::LabelIntake(Store* store) : store_(store) {}

IntakeOutcome LabelIntake::operator()(const v1::LabelEvent& label,
                                      const KafkaMessage& source) const {
  IntakeOutcome outcome;
  const std::string image_key = keys::Image(label.dataset(), label.image_id());
  const std::string key = keys::Child(image_key, label.label_id());
  Result<std::optional<std::string>> image_bytes = store_->Get(Family::kImages, image_key);
  Result<std::optional<std::string>> existing = store_->Get(Family::kLabels, key);
  for (const auto* r : {&image_bytes, &existing}) {
    if (!r->ok()) {
      outcome.failure = r->status();
      return outcome;
    }
  }
  if (!image_bytes->has_value()) {
    outcome.rejected = "label for unknown image " + label.dataset() + "/" + label.image_id();
    return outcome;
  }
  v1::StoredImage image;
  if (!image.ParseFromString(**image_bytes)) {
    outcome.failure = DataLoss("store: the record of image " + label.image_id() + " is corrupt");
    return outcome;
  }
  if (label.has_dense() && (label.dense().width() != image.event().width() ||
                            label.dense().height() != image.event().height())) {
    outcome.rejected = "dense mask " + std::to_string(label.dense().width()) + "x" +
                       std::to_string(label.dense().height()) + " but image " + label.image_id() +
                       " is " + std::to_string(image.event().width()) + "x" +
                       std::to_string(image.event().height());
    return outcome;
  }
  Store::Batch batch;
  AdvanceOffset(batch, source);
  if (existing->has_value()) {
    outcome.duplicate = true;
  } else {
    batch.Put(Family::kLabels, key, label.SerializeAsString());
  }
  WriteOrFail(*store_, batch, outcome);
  return outcome;
}

}  // namespace clickdiff
