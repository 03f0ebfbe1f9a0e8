// nodes/label_intake.h — stores a label (a dense mask of the image's size, or image-level class
// ids) once per label_id. Labels marked for_evaluation are ground truth for the evaluator and are
// never trained on; the others are supervision for the trainer.
#pragma once

#include "nodes/click_intake.h"
#include "nodes/intake.h"

namespace clickdiff {

// Run in the serial intake node. Store and waiting room (`pending`) are not owned; they outlive it.
class LabelIntake {
 public:
  LabelIntake(Store* store, const ClickIntake* pending);
  // Refused: a dense mask's size differs from the image's. A label whose image is not stored yet
  // waits for it like a click (ClickIntake::Park).
  IntakeOutcome operator()(const v1::LabelEvent& label, const KafkaMessage& source) const;

 private:
  Store* store_;
  const ClickIntake* pending_;
};

}  // namespace clickdiff
