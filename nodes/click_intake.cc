#include "nodes/click_intake.h"

#include <algorithm>

#include "nodes/keys.h"

namespace clickdiff {
namespace {

const std::string kPending = std::string("pending") + '\0';

std::string PendingPrefix(const std::string& image_key) {
  return kPending + keys::Under(image_key);
}

}  // namespace

ClickIntake::ClickIntake(Store* store, DeadLetterSink* letters, int64_t pending_timeout_ms)
    : store_(store),
      letters_(letters),
      pending_timeout_ms_(pending_timeout_ms),
      started_ms_(NowMs()) {}

std::string ClickIntake::CheckBounds(const v1::ClickEvent& click, const v1::ImageEvent& image) {
  if (click.x() < 0 || click.y() < 0 || click.x() >= static_cast<int64_t>(image.width()) ||
      click.y() >= static_cast<int64_t>(image.height())) {
    return "click (" + std::to_string(click.x()) + ", " + std::to_string(click.y()) +
           ") outside image " + click.image_id() + " of " + std::to_string(image.width()) + "x" +
           std::to_string(image.height());
  }
  return "";
}

IntakeOutcome ClickIntake::operator()(const v1::ClickEvent& click,
                                      const KafkaMessage& source) const {
  IntakeOutcome outcome;
  const std::string image_key = keys::Image(click.dataset(), click.image_id());
  const std::string click_key = keys::Child(image_key, click.click_id());
  Result<std::optional<std::string>> existing = store_->Get(Family::kClicks, click_key);
  Result<std::optional<std::string>> pending = store_->Get(Family::kMetadata, kPending + click_key);
  Result<std::optional<std::string>> image_bytes = store_->Get(Family::kImages, image_key);
  for (const auto* r : {&existing, &pending, &image_bytes}) {
    if (!r->ok()) {
      outcome.failure = r->status();
      return outcome;
    }
  }
  Store::Batch batch;
  AdvanceOffset(batch, source);
  if (existing->has_value() || pending->has_value()) {
    outcome.duplicate = true;
  } else if (!image_bytes->has_value()) {
    v1::PendingClick parked;
    *parked.mutable_click() = click;
    parked.set_received_ms(NowMs());
    parked.set_source_topic(source.topic);
    parked.set_source_partition(source.partition);
    parked.set_source_offset(source.offset);
    batch.Put(Family::kMetadata, kPending + click_key, parked.SerializeAsString());
  } else {
    v1::StoredImage image;
    if (!image.ParseFromString(**image_bytes)) {
      outcome.failure = DataLoss("store: the record of image " + click.image_id() + " is corrupt");
      return outcome;
    }
    if (std::string bad = CheckBounds(click, image.event()); !bad.empty()) {
      outcome.rejected = bad;
      return outcome;
    }
    batch.Put(Family::kClicks, click_key, click.SerializeAsString());
    outcome.infer.push_back(RequestFor(click.dataset(), click.image_id()));
  }
  WriteOrFail(*store_, batch, outcome);
  return outcome;
}

Status ClickIntake::AdoptPending(const v1::ImageEvent& image, Store::Batch& batch) const {
  const std::string image_key = keys::Image(image.dataset(), image.image_id());
  const std::string prefix = PendingPrefix(image_key);
  Status letter = Status::Ok();
  Status scanned =
      store_->Scan(Family::kMetadata, prefix, [&](std::string_view key, std::string_view value) {
        v1::PendingClick parked;
        batch.Delete(Family::kMetadata, key);
        if (!parked.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
        if (std::string bad = CheckBounds(parked.click(), image); !bad.empty()) {
          letter = (*letters_)(parked, bad);
          return letter.ok();
        }
        batch.Put(Family::kClicks, keys::Child(image_key, parked.click().click_id()),
                  parked.click().SerializeAsString());
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  return letter;
}

Result<size_t> ClickIntake::ExpirePending(int64_t now_ms) const {
  size_t expired = 0;
  Store::Batch batch;
  Status letter = Status::Ok();
  Status scanned =
      store_->Scan(Family::kMetadata, kPending, [&](std::string_view key, std::string_view value) {
        v1::PendingClick parked;
        if (!parked.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          batch.Delete(Family::kMetadata, key);
          return true;
        }
        if (now_ms - std::max(parked.received_ms(), started_ms_) >= pending_timeout_ms_) {
          letter = (*letters_)(parked, "click for unknown image " + parked.click().dataset() + "/" +
                                           parked.click().image_id() +
                                           " (no such image arrived within " +
                                           std::to_string(pending_timeout_ms_) + " ms)");
          if (!letter.ok()) return false;
          batch.Delete(Family::kMetadata, key);
          ++expired;
        }
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  // Letters already sent stay removed even when a later one failed: they are not sent twice.
  if (!batch.empty()) CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));
  CLICKDIFF_RETURN_IF_ERROR(letter);
  return expired;
}

}  // namespace clickdiff
