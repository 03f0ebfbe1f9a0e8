#include "nodes/click_intake.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <string>
#include <vector>

#include "io/keys.h"
#include "learning/replay.h"
#include "model/click_guidance.h"

namespace clickdiff {
namespace {

const std::string kPending = std::string("pending") + '\0';

std::string PendingPrefix(const std::string& image_key) {
  return kPending + keys::Under(image_key);
}

// Clicks and labels wait side by side; their ids live in different namespaces.
std::string PendingKey(const v1::PendingEvent& parked) {
  if (parked.has_label()) {
    const v1::LabelEvent& l = parked.label();
    return PendingPrefix(keys::Image(l.dataset(), l.image_id())) + "label:" + l.label_id();
  }
  const v1::ClickEvent& c = parked.click();
  return PendingPrefix(keys::Image(c.dataset(), c.image_id())) + "click:" + c.click_id();
}

}  // namespace

std::string ClickIntake::DenseSizeProblem(const v1::LabelEvent& label,
                                          const v1::ImageEvent& image) {
  if (!label.has_dense() ||
      (label.dense().width() == image.width() && label.dense().height() == image.height())) {
    return "";
  }
  return "dense mask " + std::to_string(label.dense().width()) + "x" +
         std::to_string(label.dense().height()) + " but image " + label.image_id() + " is " +
         std::to_string(image.width()) + "x" + std::to_string(image.height());
}

ClickIntake::ClickIntake(Store* store, DeadLetterSink* letters, int64_t pending_timeout_ms,
                         uint64_t keep_curve_versions)
    : store_(store),
      letters_(letters),
      pending_timeout_ms_(pending_timeout_ms),
      keep_curve_versions_(keep_curve_versions),
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
  Result<std::optional<std::string>> image_bytes = store_->Get(Family::kImages, image_key);
  for (const auto* r : {&existing, &image_bytes}) {
    if (!r->ok()) {
      outcome.failure = r->status();
      return outcome;
    }
  }
  Store::Batch batch;
  AdvanceOffset(batch, source);
  if (existing->has_value()) {
    outcome.duplicate = true;
  } else if (!image_bytes->has_value()) {
    v1::PendingEvent parked;
    *parked.mutable_click() = click;
    Result<bool> fresh = Park(std::move(parked), source, batch);
    if (!fresh.ok()) {
      outcome.failure = fresh.status();
      return outcome;
    }
    outcome.duplicate = !*fresh;
  } else {
    v1::StoredImage image;
    if (!image.ParseFromString(**image_bytes)) {  // refused, not a halt: a restart would not help
      outcome.rejected = "the stored record of image " + click.dataset() + "/" + click.image_id() +
                         " is corrupt: send the image again, then the click";
      return outcome;
    }
    if (std::string bad = CheckBounds(click, image.event()); !bad.empty()) {
      outcome.rejected = bad;
      return outcome;
    }
    Result<std::optional<v1::MaskResult>> mask = ServedMask(image_key);
    Result<bool> first = mask.ok() ? FirstOfItsClass(click, image_key) : mask.status();
    Result<std::optional<v1::Metrics>> checked =
        first.ok() ? CheckFresh(click, *mask, *first, batch) : first.status();
    if (!checked.ok()) {
      outcome.failure = checked.status();
      return outcome;
    }
    outcome.click_checks = std::move(checked).value();
    v1::ClickEvent stored = click;
    stored.set_correction_gap(CorrectionGap(click, image, *mask, *first));
    batch.Put(Family::kClicks, click_key, stored.SerializeAsString());
    outcome.infer.push_back(PreviewFor(click.dataset(), click.image_id()));
    outcome.infer.push_back(RequestFor(click.dataset(), click.image_id()));
  }
  WriteOrFail(*store_, batch, outcome);
  return outcome;
}

Result<std::optional<v1::MaskResult>> ClickIntake::ServedMask(const std::string& image_key) const {
  Result<std::optional<std::string>> cached = store_->Get(Family::kMasks, image_key);
  if (!cached.ok()) return cached.status();
  v1::MaskResult mask;
  if (!cached->has_value() || !mask.ParseFromString(**cached)) {
    return std::optional<v1::MaskResult>();
  }
  return std::optional<v1::MaskResult>(std::move(mask));
}

Result<std::optional<v1::Metrics>> ClickIntake::CheckFresh(
    const v1::ClickEvent& click, const std::optional<v1::MaskResult>& served, bool first,
    Store::Batch& batch) const {
  if (!served.has_value()) return std::optional<v1::Metrics>();
  const v1::MaskResult& mask = *served;
  const auto x = static_cast<uint64_t>(click.x());
  const auto y = static_cast<uint64_t>(click.y());
  if (x >= mask.width() || y >= mask.height() ||
      mask.mask().size() != static_cast<size_t>(mask.width()) * mask.height()) {
    return std::optional<v1::Metrics>();  // a mask of another size than the image's (not drawn for
                                          // it)
  }
  const int drawn = static_cast<uint8_t>(mask.mask()[(y * mask.width()) + x]);
  // A negative click says the pixel is background (training takes it so: model/training_example.h),
  // whatever class it names.
  const bool hit = drawn == (click.positive() ? click.class_id() : 0);
  const std::string key = keys::ClickChecks(click.dataset(), mask.model_version());
  Result<std::optional<std::string>> stored = store_->Get(Family::kMetrics, key);
  if (!stored.ok()) return stored.status();
  v1::Metrics record;
  if (stored->has_value() && !record.ParseFromString(**stored)) {
    spdlog::warn("the fresh-click record of {} version {} is corrupt; counting again from zero",
                 click.dataset(), mask.model_version());
    record.Clear();
  }
  if (!stored->has_value()) {  // a version's first check: the dataset's older curve goes
    batch.DeleteOldVersions(Family::kMetrics, keys::ClickChecksPrefix(click.dataset()),
                            mask.model_version(), keep_curve_versions_);
  }
  record.set_dataset(click.dataset());
  record.set_model_version(mask.model_version());
  record.set_timestamp_ms(NowMs());
  v1::ClickChecks& checks = *record.mutable_fresh_clicks();
  checks.set_tested(checks.tested() + 1);
  checks.set_hits(checks.hits() + (hit ? 1 : 0));
  if (first) {
    checks.set_first_tested(checks.first_tested() + 1);
    checks.set_first_hits(checks.first_hits() + (hit ? 1 : 0));
  }
  if (!click.positive()) {
    checks.set_negative_tested(checks.negative_tested() + 1);
    checks.set_negative_hits(checks.negative_hits() + (hit ? 1 : 0));
  }
  batch.Put(Family::kMetrics, key, record.SerializeAsString());
  return std::optional<v1::Metrics>(std::move(record));
}

Result<bool> ClickIntake::FirstOfItsClass(const v1::ClickEvent& click,
                                          const std::string& image_key) const {
  bool first = click.positive();
  if (first) {
    CLICKDIFF_RETURN_IF_ERROR(store_->Scan(
        Family::kClicks, keys::Under(image_key), [&](std::string_view, std::string_view value) {
          v1::ClickEvent earlier;
          if (earlier.ParseFromArray(value.data(), static_cast<int>(value.size())) &&
              earlier.positive() && earlier.class_id() == click.class_id()) {
            first = false;
          }
          return first;
        }));
  }
  return first;
}

float ClickIntake::CorrectionGap(const v1::ClickEvent& click, const v1::StoredImage& image,
                                 const std::optional<v1::MaskResult>& served, bool first) {
  if (first) return 0.0F;
  const v1::ImageEvent& event = image.event();
  const auto pixels = static_cast<size_t>(event.width()) * event.height();
  if (!served.has_value() || served->width() != event.width() ||
      served->height() != event.height() || served->mask().size() != pixels) {
    return 0.0F;  // no mask the annotator could have seen, or not one drawn for this image
  }
  Result<model::GridMapping> mapping = StoredGridMapping(image);
  if (!mapping.ok()) return 0.0F;
  Result<torch::Tensor> grid = StoredGrid(image, std::max<int64_t>(1, image.grid_channels()));
  if (!grid.ok()) return 0.0F;  // unreadable: the sampler refuses the image and says why
  Result<torch::Tensor> on_mask = BytesToGrid(served->mask(), *mapping);
  if (!on_mask.ok()) return 0.0F;
  const model::Click on_grid = model::ClicksToGrid(
      {model::Click{click.x(), click.y(), click.class_id(), click.positive()}}, *mapping)[0];
  try {
    return static_cast<float>(model::CorrectionGap(*grid, *on_mask, on_grid));
  } catch (const std::exception& e) {  // derived data: the click is stored, correcting nothing
    spdlog::warn("click {} of image {}: its correction not measured: {}", click.click_id(),
                 click.image_id(), e.what());
    return 0.0F;
  }
}

Result<bool> ClickIntake::Park(v1::PendingEvent parked, const KafkaMessage& source,
                               Store::Batch& batch) const {
  const std::string key = PendingKey(parked);
  Result<std::optional<std::string>> waiting = store_->Get(Family::kMetadata, key);
  if (!waiting.ok()) return waiting.status();
  if (waiting->has_value()) return false;
  parked.set_received_ms(NowMs());
  parked.set_source_topic(source.topic);
  parked.set_source_partition(source.partition);
  parked.set_source_offset(source.offset);
  parked.set_source_timestamp_ms(source.timestamp_ms);
  batch.Put(Family::kMetadata, key, parked.SerializeAsString());
  return true;
}

Status ClickIntake::AdoptPending(const v1::ImageEvent& image, Store::Batch& batch) const {
  const std::string image_key = keys::Image(image.dataset(), image.image_id());
  const std::string prefix = PendingPrefix(image_key);
  Status scanned =
      store_->Scan(Family::kMetadata, prefix, [&](std::string_view key, std::string_view value) {
        v1::PendingEvent parked;
        batch.Delete(Family::kMetadata, key);
        if (!parked.ParseFromArray(value.data(), static_cast<int>(value.size()))) return true;
        const std::string bad = parked.has_label() ? DenseSizeProblem(parked.label(), image)
                                                   : CheckBounds(parked.click(), image);
        if (!bad.empty()) {
          letters_->Add(batch, parked, bad);  // kept with the image's batch: never lost
          return true;
        }
        if (parked.has_label()) {
          batch.Put(Family::kLabels, keys::Child(image_key, parked.label().label_id()),
                    parked.label().SerializeAsString());
        } else {  // no mask was served before its image: the click corrects nothing
          v1::ClickEvent click = parked.click();
          click.set_correction_gap(0);
          batch.Put(Family::kClicks, keys::Child(image_key, click.click_id()),
                    click.SerializeAsString());
        }
        return true;
      });
  return scanned;
}

void ClickIntake::ImageRecordRead(int32_t partition, int64_t record_timestamp_ms) {
  int64_t& newest = images_time_ms_[partition];
  newest = std::max(newest, record_timestamp_ms);
}

Result<size_t> ClickIntake::ExpirePending(int64_t now_ms) const {
  // How far every images partition has been read, in event time.
  int64_t images_time = 0;
  for (const auto& [partition, newest] : images_time_ms_) {
    images_time = images_time == 0 ? newest : std::min(images_time, newest);
  }
  size_t expired = 0;
  Store::Batch batch;
  Status scanned =
      store_->Scan(Family::kMetadata, kPending, [&](std::string_view key, std::string_view value) {
        v1::PendingEvent parked;
        if (!parked.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          batch.Delete(Family::kMetadata, key);
          return true;
        }
        const int64_t event_time = parked.source_timestamp_ms();
        const bool passed =
            images_time > 0 && event_time > 0 && images_time - event_time >= pending_timeout_ms_;
        const bool quiet =
            images_at_end_since_ms_ > 0 &&
            now_ms - std::max({parked.received_ms(), started_ms_, images_at_end_since_ms_}) >=
                pending_timeout_ms_;
        if (passed || quiet) {
          const bool label = parked.has_label();
          const std::string timeout = std::to_string(pending_timeout_ms_) + " ms";
          letters_->Add(batch, parked,
                        std::string(label ? "label" : "click") + " for unknown image " +
                            (label ? parked.label().dataset() : parked.click().dataset()) + "/" +
                            (label ? parked.label().image_id() : parked.click().image_id()) +
                            (passed ? " (the images topic was read " + timeout +
                                          " past its time and no such image came)"
                                    : " (no such image arrived within " + timeout +
                                          " of the images topic's end)"));
          batch.Delete(Family::kMetadata, key);
          ++expired;
        }
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  // The letters and the removals in one batch: a click is either still waiting or has its letter.
  if (batch.empty()) return expired;
  CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));
  return expired;
}

}  // namespace clickdiff
