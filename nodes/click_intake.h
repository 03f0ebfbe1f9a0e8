// nodes/click_intake.h — records a click: inside its image, not seen before (click_id), then the
// image's mask is redrawn: a preview first (InferRequest::preview, a few samples on a thread of
// their own), then the final mask. (A click adopted when its image arrives gets the image's mask
// only: nobody is waiting on it yet.) A new click is first a free held-out label: it is tested on
// the mask its image has (drawn before the click could train anything) and counted in that model
// version's fresh-click record (v1::ClickChecks, under keys::ClickChecks), in the click's own
// batch. A click (or a label, see LabelIntake) that overtook its image (topics are consumed
// independently) waits in the store as a PendingEvent until the image arrives or
// `pending_timeout_ms` passes; this class keeps that waiting room.
#pragma once

#include "nodes/dead_letter.h"
#include "nodes/intake.h"

namespace clickdiff {

// Not thread-safe with respect to the store's click records: run it (with ImageIntake) in the one
// serial intake node. The store is not owned and must outlive the node.
class ClickIntake {
 public:
  // `letters` receives clicks refused after they were parked; it is not owned.
  ClickIntake(Store* store, DeadLetterSink* letters, int64_t pending_timeout_ms);
  IntakeOutcome operator()(const v1::ClickEvent& click, const KafkaMessage& source) const;

  // Dead-letters the pending clicks that waited longer than the timeout, then removes them (their
  // offsets advanced when they were parked). Time spent while the service was down does not count:
  // the wait starts at the later of the click's arrival and this node's construction, so a
  // backlog read after a restart gets its full timeout. Returns how many expired.
  Result<size_t> ExpirePending(int64_t now_ms) const;

  // Moves the pending clicks of a newly stored image into `batch`: clicks inside it become clicks,
  // those outside are dead-lettered (before `batch` is written, so a crash cannot lose them).
  Status AdoptPending(const v1::ImageEvent& image, Store::Batch& batch) const;

  // Parks `parked` (a click or a label of an image not stored yet) in `batch`; it records when and
  // where it came from. Returns false when the same click_id/label_id already waits.
  Result<bool> Park(v1::PendingEvent parked, const KafkaMessage& source, Store::Batch& batch) const;

  // "" when a dense label fits its image (or is not dense), else the reason.
  static std::string DenseSizeProblem(const v1::LabelEvent& label, const v1::ImageEvent& image);

  // "" when (x, y) lies inside the image, else the reason.
  static std::string CheckBounds(const v1::ClickEvent& click, const v1::ImageEvent& image);

 private:
  // Tests a new click on its image's current mask and puts the updated fresh-click record of the
  // mask's version in `batch`; nullopt when the image has no usable mask yet. A corrupt record
  // starts again from zero (with a warning) rather than refuse the click.
  Result<std::optional<v1::Metrics>> CheckFresh(const v1::ClickEvent& click,
                                                const std::string& image_key,
                                                Store::Batch& batch) const;

  Store* store_;
  DeadLetterSink* letters_;
  int64_t pending_timeout_ms_;
  int64_t started_ms_;
};

}  // namespace clickdiff
