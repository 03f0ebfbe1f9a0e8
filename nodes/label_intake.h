// nodes/label_intake.h — stores a label (a dense mask of the image's size, or image-level class
// ids) once per label_id. Labels marked for_evaluation are ground truth for the evaluator and are
// never trained on; the others are supervision for the trainer.
#pragma once

#include "nodes/intake.h"

namespace clickdiff {

// Run in the serial intake node. The store is not owned and must outlive the node.
class LabelIntake {
 public:
  explicit LabelIntake(Store* store);
  // Refused: the image is unknown, or a dense mask's size differs from the image's.
  IntakeOutcome operator()(const v1::LabelEvent& label, const KafkaMessage& source) const;

 private:
  Store* store_;
};

}  // namespace clickdiff
