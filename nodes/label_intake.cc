#include "nodes/label_intake.h"

#include "io/keys.h"

namespace clickdiff {

LabelIntake::LabelIntake(Store* store, const ClickIntake* pending)
    : store_(store), pending_(pending) {}

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
  Store::Batch batch;
  AdvanceOffset(batch, source);
  if (!image_bytes->has_value()) {
    v1::PendingEvent parked;
    *parked.mutable_label() = label;
    Result<bool> fresh = pending_->Park(std::move(parked), source, batch);
    if (!fresh.ok()) {
      outcome.failure = fresh.status();
      return outcome;
    }
    outcome.duplicate = !*fresh;
    WriteOrFail(*store_, batch, outcome);
    return outcome;
  }
  v1::StoredImage image;
  if (!image.ParseFromString(**image_bytes)) {  // refused, not a halt: a restart would not help
    outcome.rejected = "the stored record of image " + label.dataset() + "/" + label.image_id() +
                       " is corrupt: send the image again, then the label";
    return outcome;
  }
  if (std::string bad = ClickIntake::DenseSizeProblem(label, image.event()); !bad.empty()) {
    outcome.rejected = bad;
    return outcome;
  }
  if (existing->has_value()) {
    outcome.duplicate = true;
  } else {
    batch.Put(Family::kLabels, key, label.SerializeAsString());
    // Ground truth for the evaluator: the current mask is published again (from the cache when
    // it is current) so that it gets scored.
    if (label.for_evaluation()) {
      outcome.infer.push_back(RequestFor(label.dataset(), label.image_id(), kPriorityStale));
    }
  }
  WriteOrFail(*store_, batch, outcome);
  return outcome;
}

}  // namespace clickdiff
