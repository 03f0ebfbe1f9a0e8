#include "nodes/intake_stage.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "base/clock.h"
#include "base/guard.h"
#include "io/keys.h"

namespace clickdiff {
namespace {

// The longest wait between two expiry scans, however long one takes.
constexpr std::chrono::seconds kLongestExpiryGap{10};

}  // namespace

IntakeStage::IntakeStage(Store* store, KafkaProducer* producer, Outbox* outbox,
                         const KafkaTopics& topics, const LimitsConfig& limits, StoredCounts stored,
                         OnStored on_stored, uint64_t keep_curve_versions)
    : producer_(producer),
      metrics_topic_(topics.metrics),
      images_topic_(topics.images),
      dead_letters_(outbox, store, topics.dlq_suffix),
      click_intake_(store, &dead_letters_, limits.pending_click_timeout_ms, keep_curve_versions),
      image_intake_(store, &click_intake_),
      label_intake_(store, &click_intake_),
      on_stored_(std::move(on_stored)) {
  counters_.stored = stored;
}

Result<StoredCounts> IntakeStage::CountStored(const Store& store) {
  StoredCounts counts;
  for (auto [family, count] :
       {std::pair{Family::kImages, &counts.images}, std::pair{Family::kClicks, &counts.clicks},
        std::pair{Family::kLabels, &counts.labels}}) {
    Result<uint64_t> n = store.Count(family);
    if (!n.ok()) return n.status();
    *count = *n;
  }
  return counts;
}

std::vector<InferRequest> IntakeStage::operator()(const Decoded& event) {
  if (halted_.load()) return {};
  Result<std::vector<InferRequest>> infer = Guarded("intake", [&] { return Apply(event); });
  if (!infer.ok()) {
    Halt(infer.status());
    return {};
  }
  return std::move(infer).value();
}

Result<std::vector<InferRequest>> IntakeStage::Apply(const Decoded& d) {
  CLICKDIFF_RETURN_IF_ERROR(d.failure);  // halts: the record is read again after a restart
  if (const auto* tick = std::get_if<Tick>(&d.event)) {
    click_intake_.ImagesAtEnd(tick->images_at_end_since_ms);
    if (const auto start = std::chrono::steady_clock::now(); start >= next_expiry_) {
      Result<size_t> expired = click_intake_.ExpirePending(NowMs());
      if (!expired.ok()) return expired.status();
      const auto end = std::chrono::steady_clock::now();
      next_expiry_ =
          end + std::min<std::chrono::steady_clock::duration>(9 * (end - start), kLongestExpiryGap);
    }
    // Deliveries acknowledged since, and letters a failure or an earlier run left, go out.
    CLICKDIFF_RETURN_IF_ERROR(dead_letters_.Pump());
    return std::vector<InferRequest>();
  }
  if (!d.source.topic.empty() && d.source.topic == images_topic_) {
    click_intake_.ImageRecordRead(d.source.partition, d.source.timestamp_ms);  // its progress
  }
  IntakeOutcome outcome;
  std::string image_key;  // the image whose records the event writes
  if (const auto* rejected = std::get_if<Rejected>(&d.event)) {
    outcome.rejected = rejected->reason;
  } else if (const auto* image = std::get_if<ImageRecord>(&d.event)) {
    outcome = image_intake_(*image, d.source);
    image_key = keys::Image(image->stored.event().dataset(), image->stored.event().image_id());
  } else if (const auto* click = std::get_if<v1::ClickEvent>(&d.event)) {
    outcome = click_intake_(*click, d.source);
    image_key = keys::Image(click->dataset(), click->image_id());
  } else if (const auto* label = std::get_if<v1::LabelEvent>(&d.event)) {
    outcome = label_intake_(*label, d.source);
    image_key = keys::Image(label->dataset(), label->image_id());
  }
  CLICKDIFF_RETURN_IF_ERROR(
      outcome.failure.WithContext(d.source.topic + "@" + std::to_string(d.source.offset)));
  if (outcome.rejected) CLICKDIFF_RETURN_IF_ERROR(dead_letters_(d.source, *outcome.rejected));
  // The event's letters (its own, or its image's batch's for clicks that did not fit) go out.
  CLICKDIFF_RETURN_IF_ERROR(dead_letters_.Pump());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.applied;
    counters_.duplicates += outcome.duplicate ? 1 : 0;
    counters_.stored.images += outcome.added.images;
    counters_.stored.clicks += outcome.added.clicks;
    counters_.stored.labels += outcome.added.labels;
  }
  if (outcome.click_checks && producer_ != nullptr && !metrics_topic_.empty()) {
    const v1::Metrics& m = *outcome.click_checks;
    Status produced = producer_->Produce(
        metrics_topic_, m.dataset() + "/v" + std::to_string(m.model_version()) + "/clicks",
        m.SerializeAsString());
    if (!produced.ok()) spdlog::warn("metrics (fresh clicks): {}", produced.ToString());
  }
  if (!outcome.rejected && !outcome.duplicate && on_stored_) on_stored_(image_key);
  return std::move(outcome.infer);
}

// After a failure nothing more is written: a later event's offset would skip the failed one.
void IntakeStage::Halt(const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_.ok()) {
    spdlog::error("intake stopped: {}", status.ToString());
    failure_ = status;
    halted_.store(true);
  }
}

IntakeCounters IntakeStage::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  IntakeCounters c = counters_;
  c.dead_letters = dead_letters_.count();
  return c;
}

Status IntakeStage::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

}  // namespace clickdiff
