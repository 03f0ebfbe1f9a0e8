// nodes/click_intake.h — records a click: inside its image, not seen before (click_id), then the
// image's mask is redrawn: a preview first (InferRequest::preview, a few samples on a thread of
// their own), then the final mask. (A click adopted when its image arrives gets the image's mask
// only: nobody is waiting on it yet.) A new click is first a free held-out label: it is tested on
// the mask its image has (drawn before the click could train anything) and counted in that model
// version's fresh-click record (v1::ClickChecks, under keys::ClickChecks), in the click's own
// batch. A click (or a label, see LabelIntake) that overtook its image (topics are consumed
// independently) waits in the store as a PendingEvent until the image arrives or the images
// stream shows it is not coming (ExpirePending); this class keeps that waiting room.
#pragma once

#include <map>

#include "nodes/dead_letter.h"
#include "nodes/intake.h"

namespace clickdiff {

// Not thread-safe with respect to the store's click records: run it (with ImageIntake) in the one
// serial intake node. The store is not owned and must outlive the node.
class ClickIntake {
 public:
  // `letters` receives clicks refused after they were parked; it is not owned. The fresh-click
  // records of a dataset's versions `keep_curve_versions` back from the newest it checks are
  // deleted (0: all kept).
  ClickIntake(Store* store, DeadLetterSink* letters, int64_t pending_timeout_ms,
              uint64_t keep_curve_versions = 0);
  IntakeOutcome operator()(const v1::ClickEvent& click, const KafkaMessage& source) const;

  // The images stream's progress, which decides when a pending click's image is not coming
  // (ExpirePending): a record of images partition `partition` was read (accepted or not) with
  // this Kafka timestamp (0: none); the images topic is at its end since this wall time (Tick;
  // 0: not).
  void ImageRecordRead(int32_t partition, int64_t record_timestamp_ms);
  void ImagesAtEnd(int64_t since_ms) { images_at_end_since_ms_ = since_ms; }

  // Dead-letters the pending clicks whose image is not coming and removes them in one batch (their
  // offsets advanced when they were parked); the sink's Pump sends the letters. A click's image is
  // not coming when every images partition read so far has been read `pending_timeout_ms` past the
  // click's own record timestamp (event time, as Kafka Streams aligns topics; a partition with
  // nothing newer holds this back), or when the images topic has been at
  // its end for that long while the click waited. So in a backlog, where clicks outrun their
  // images, a click waits as long as images older than it are still being read, however long
  // that takes; time spent while the service was down does not count. Returns how many expired.
  Result<size_t> ExpirePending(int64_t now_ms) const;

  // Moves the pending clicks of a newly stored image into `batch`: clicks inside it become clicks,
  // those outside are dead-lettered in `batch` too (the caller writes it, then pumps the letters:
  // DeadLetterSink::Pump), so a crash cannot lose them.
  Status AdoptPending(const v1::ImageEvent& image, Store::Batch& batch) const;

  // Parks `parked` (a click or a label of an image not stored yet) in `batch`; it records when and
  // where it came from. Returns false when the same click_id/label_id already waits.
  Result<bool> Park(v1::PendingEvent parked, const KafkaMessage& source, Store::Batch& batch) const;

  // "" when a dense label fits its image (or is not dense), else the reason.
  static std::string DenseSizeProblem(const v1::LabelEvent& label, const v1::ImageEvent& image);

  // "" when (x, y) lies inside the image, else the reason.
  static std::string CheckBounds(const v1::ClickEvent& click, const v1::ImageEvent& image);

 private:
  // The final mask now served for the image (nodes/mask_cache.h); nullopt when there is none or it
  // does not parse. Read once per click for both uses below. Errors: the store's.
  Result<std::optional<v1::MaskResult>> ServedMask(const std::string& image_key) const;

  // Tests a new click on its image's current `mask` and puts the updated fresh-click record of the
  // mask's version in `batch`; nullopt when the image has no usable mask yet. `first`: the click
  // is its class's first positive one. A corrupt record starts again from zero (with a warning)
  // rather than refuse the click.
  Result<std::optional<v1::Metrics>> CheckFresh(const v1::ClickEvent& click,
                                                const std::optional<v1::MaskResult>& mask,
                                                bool first, Store::Batch& batch) const;

  // Whether `click` is positive and the first positive click of its class on the image.
  Result<bool> FirstOfItsClass(const v1::ClickEvent& click, const std::string& image_key) const;

  // ClickEvent.correction_gap of a new click on `image`: model::CorrectionGap on the grid of the
  // final `mask` now served for it (0 without one that fits, for its class's first click, or when
  // the measure fails, with a warning).
  static float CorrectionGap(const v1::ClickEvent& click, const v1::StoredImage& image,
                             const std::optional<v1::MaskResult>& mask, bool first);

  Store* store_;
  DeadLetterSink* letters_;
  int64_t pending_timeout_ms_;
  uint64_t keep_curve_versions_;
  int64_t started_ms_;
  std::map<int32_t, int64_t> images_time_ms_;  // per images partition: its newest record timestamp
  int64_t images_at_end_since_ms_ = 0;         // see Tick; 0: not at its end
};

}  // namespace clickdiff
