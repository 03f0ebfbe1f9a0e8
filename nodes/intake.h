// nodes/intake.h — what an intake stage returns. The intake stages (image, click, label) run in
// ONE serial graph node, in consumption order: each reads what it needs from the store and writes
// the event's effect together with the record's next offset in one RocksDB batch, so a restart
// neither loses nor re-applies an event.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "io/kafka_consumer.h"
#include "io/store.h"
#include "nodes/messages.h"
#include "schemas/events.pb.h"

namespace clickdiff {

// Records of the kinds the service reports (ServiceStatus).
struct StoredCounts {
  uint64_t images = 0;
  uint64_t clicks = 0;
  uint64_t labels = 0;
};

struct IntakeOutcome {
  // Set when the event is refused: nothing was written, and the dead-letter stage records it
  // (and its offset).
  std::optional<std::string> rejected;
  // Applied before (same id): nothing changed but the offset.
  bool duplicate = false;
  // New records the event wrote (intake writes only records that were not stored before).
  StoredCounts added;
  // Masks to draw again because of this event.
  std::vector<InferRequest> infer;
  // A new click tested on its image's mask: the updated fresh-click record of the mask's model
  // version (ClickIntake), published on the metrics topic once written.
  std::optional<v1::Metrics> click_checks;
  // Set when the store (or the dead-letter topic) failed: nothing of the event was written and
  // its offset did not advance, so intake must stop; the event is read again after a restart.
  Status failure;
};

// Adds `source`'s next offset to `batch`.
void AdvanceOffset(Store::Batch& batch, const KafkaMessage& source);
// Writes `batch` and counts its new records in `outcome.added`; when that fails, `outcome` becomes
// that failure alone (nothing was applied).
void WriteOrFail(Store& store, Store::Batch& batch, IntakeOutcome& outcome);
// A request to redraw dataset/image_id, stamped now.
InferRequest RequestFor(const std::string& dataset, const std::string& image_id,
                        double priority = kPriorityEvent);
// A click's first answer for dataset/image_id (InferRequest::preview), stamped now.
InferRequest PreviewFor(const std::string& dataset, const std::string& image_id);

}  // namespace clickdiff
