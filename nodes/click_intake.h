// nodes/click_intake.h — records a click: inside its image, not seen before (click_id), then the
// image's mask is redrawn. A click that overtook its image (topics are consumed independently)
// waits in the store as a PendingClick until the image arrives or `pending_timeout_ms` passes.
#pragma once

#include "nodes/intake.h"

namespace clickdiff {

// Not thread-safe with respect to the store's click records: run it (with ImageIntake) in the one
// serial intake node. The store is not owned and must outlive the node.
class ClickIntake {
 public:
  ClickIntake(Store* store, int64_t pending_timeout_ms);
  IntakeOutcome operator()(const v1::ClickEvent& click, const KafkaMessage& source) const;

  // Pending clicks older than the timeout, removed from the store and returned with the reason
  // (they are dead-lettered; their offsets advanced when they were parked).
  Result<std::vector<std::pair<v1::PendingClick, std::string>>> ExpirePending(int64_t now_ms) const;

  // Moves the pending clicks of a newly stored image into `batch`: clicks inside it become clicks,
  // those outside are returned as rejections.
  Status AdoptPending(const v1::ImageEvent& image, Store::Batch& batch,
                      IntakeOutcome& outcome) const;

  // "" when (x, y) lies inside the image, else the reason.
  static std::string CheckBounds(const v1::ClickEvent& click, const v1::ImageEvent& image);

 private:
  Store* store_;
  int64_t pending_timeout_ms_;
};

}  // namespace clickdiff
