#include "nodes/stale_masks.h"

#include <algorithm>
#include <queue>

#include "io/keys.h"
#include "nodes/intake.h"

namespace clickdiff {
namespace {

// How many clicks an image has (its click revision) and when the latest was sent.
struct ClickSummary {
  uint64_t count = 0;
  int64_t last_ms = 0;
};

Result<ClickSummary> ClicksOf(const Store& store, const std::string& image_key) {
  ClickSummary summary;
  Status scanned = store.Scan(
      Family::kClicks, keys::Under(image_key), [&](std::string_view, std::string_view value) {
        ++summary.count;
        v1::ClickEvent click;
        if (click.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          summary.last_ms = std::max(summary.last_ms, click.timestamp_ms());
        }
        return true;
      });
  if (!scanned.ok()) return scanned;
  return summary;
}

double MeanUncertainty(const v1::MaskResult& mask) {
  const std::string& u = mask.uncertainty();
  if (u.empty()) return 1;
  double sum = 0;
  for (unsigned char b : u) sum += b;
  return sum / (255.0 * static_cast<double>(u.size()));
}

// Sweep order: the higher priority first, then the lower key.
bool Precedes(const SweepCursor& a, const SweepCursor& b) {
  return a.priority != b.priority ? a.priority > b.priority : a.key < b.key;
}

struct Stale {
  SweepCursor at;
  InferRequest request;
};
struct LaterLast {
  bool operator()(const Stale& a, const Stale& b) const { return Precedes(a.at, b.at); }
};

}  // namespace

StaleMasks::StaleMasks(const Store* store, const MaskCache* cache) : store_(store), cache_(cache) {}

Result<SweepPage> StaleMasks::Page(uint64_t version, const std::optional<SweepCursor>& after,
                                   size_t limit) const {
  // The best `limit` after the cursor, the one that comes last on top (it goes first when a
  // better one is found).
  limit = std::max<size_t>(limit, 1);
  std::priority_queue<Stale, std::vector<Stale>, LaterLast> best;
  bool more = false;
  Status scanned = store_->Scan(Family::kImages, "", [&](std::string_view key, std::string_view) {
    std::optional<std::pair<std::string, std::string>> ids = keys::ImageIds(key);
    if (!ids.has_value()) return true;
    const auto& [dataset, image_id] = *ids;
    Result<std::optional<v1::MaskResult>> current = cache_->Current(dataset, image_id);
    Result<ClickSummary> clicks = ClicksOf(*store_, std::string(key));
    double priority = 0;
    if (!current.ok() || !clicks.ok() || !current->has_value() ||
        (*current)->click_revision() != clicks->count) {
      priority = kPriorityStale;
    } else if ((*current)->model_version() != version) {
      priority = clicks->count > 0 ? ClickedPriority(clicks->last_ms) : MeanUncertainty(**current);
    } else {
      return true;  // current
    }
    SweepCursor at{priority, std::string(key)};
    if (after.has_value() && !Precedes(*after, at)) return true;  // an earlier page's
    if (best.size() == limit) {
      more = true;
      if (!Precedes(at, best.top().at)) return true;
      best.pop();
    }
    best.push({std::move(at), RequestFor(dataset, image_id, priority)});
    return true;
  });
  if (!scanned.ok()) return scanned;
  SweepPage page;
  if (more) page.next = best.top().at;
  page.requests.resize(best.size());
  for (size_t i = best.size(); i-- > 0; best.pop()) page.requests[i] = best.top().request;
  return page;
}

}  // namespace clickdiff
