// nodes/image_intake.h — stores a preprocessed image once (image_id is the idempotency key),
// adopts the clicks that arrived before it, and asks for its first mask.
#pragma once

#include "nodes/click_intake.h"
#include "nodes/intake.h"

namespace clickdiff {

// Run in the serial intake node (with ClickIntake). Store and clicks not owned; they outlive it.
class ImageIntake {
 public:
  ImageIntake(Store* store, const ClickIntake* clicks);
  // A repeated image_id leaves the stored image as it is (duplicate = true).
  IntakeOutcome operator()(const ImageRecord& image, const KafkaMessage& source) const;

 private:
  Store* store_;
  const ClickIntake* clicks_;
};

}  // namespace clickdiff
