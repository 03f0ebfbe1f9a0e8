#include "nodes/publish_stage.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "base/guard.h"
#include "io/keys.h"

namespace clickdiff {

PublishStage::PublishStage(const MaskCache* cache, const Publisher* publisher, Evaluator* evaluator,
                           OnMaskStored on_mask_stored)
    : cache_(cache),
      publisher_(publisher),
      evaluator_(evaluator),
      on_mask_stored_(std::move(on_mask_stored)) {}

PublishOutcome PublishStage::operator()(const v1::MaskResult& mask) const {
  PublishOutcome outcome;
  Result<std::optional<v1::MaskResult>> current =
      Guarded("mask cache", [&] { return cache_->Current(mask.dataset(), mask.image_id()); });
  if (current.ok() && current->has_value()) {
    const auto cached = std::make_pair((*current)->model_version(), (*current)->click_revision());
    const auto drawn = std::make_pair(mask.model_version(), mask.click_revision());
    // A preview is worth showing only while no final mask reflects its click, whatever the
    // versions (a version swap between the two draws must not let it replace its final mask).
    if (mask.preview() ? cached.second >= drawn.second : cached > drawn) {
      spdlog::debug("dropping a stale mask of {}/{}", mask.dataset(), mask.image_id());
      return outcome;
    }
  }
  outcome.preview = mask.preview();
  if (!mask.preview()) {
    if (Status s = Guarded("mask cache", [&] { return (*cache_)(mask); }); !s.ok()) {
      spdlog::error("mask cache {}/{}: {}", mask.dataset(), mask.image_id(), s.ToString());
    } else if (mask.click_revision() > 0 && on_mask_stored_) {
      on_mask_stored_(keys::Image(mask.dataset(), mask.image_id()));
    }
  }
  Result<uint64_t> sequence = Guarded("publish", [&] { return (*publisher_)(mask); });
  if (!sequence.ok()) spdlog::error("publish: {}", sequence.status().ToString());
  outcome.published = true;
  spdlog::debug("{} {}/{} v{} r{} seq {} in {:.0f} ms", mask.preview() ? "preview" : "mask",
                mask.dataset(), mask.image_id(), mask.model_version(), mask.click_revision(),
                sequence.ok() ? *sequence : 0, mask.latency_ms());
  if (mask.preview()) return outcome;  // the final mask of the same click is scored
  Result<std::optional<v1::Metrics>> scored =
      Guarded("evaluator", [&] { return (*evaluator_)(mask); });
  if (!scored.ok()) {
    spdlog::error("evaluator {}/{}: {}", mask.dataset(), mask.image_id(),
                  scored.status().ToString());
  } else if (scored->has_value()) {
    outcome.evaluated = true;
  }
  return outcome;
}

}  // namespace clickdiff
