#include "learning/replay.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "base/labels.h"
#include "io/keys.h"
#include "model/click_guidance.h"
#include "model/preprocess.h"
#include "schemas/events.pb.h"

namespace clickdiff {
namespace {

// Touched images read between two checks of the replay's budget (ReplayCache::LetWait).
constexpr size_t kTouchedBetweenChecks = 16;

// An image's training label on the grid: the last one in key order (label id) of its full masks,
// else of its partial ones (scribbles; kUnknownClass on their unmarked cells); an undefined grid
// when it has none. Evaluation labels are never read.
struct TrainingLabel {
  torch::Tensor grid;  // [R,R] int64
  bool partial = false;
};
Result<TrainingLabel> ReadTrainingLabel(const Store& store, const std::string& image_key,
                                        const model::GridMapping& mapping, uint64_t& labels) {
  std::optional<std::string> full, partial;
  Status failed = Status::Ok();
  Status scanned = store.Scan(
      Family::kLabels, keys::Under(image_key), [&](std::string_view, std::string_view value) {
        v1::LabelEvent label;
        if (!label.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          failed = DataLoss("a stored label of " + image_key + " is corrupt");
          return false;
        }
        if (label.for_evaluation() || !label.has_dense()) return true;
        const std::string& bytes = label.dense().class_ids();
        if (static_cast<int64_t>(bytes.size()) != mapping.width * mapping.height) {
          failed = InvalidArgument("label " + label.label_id() + " does not fit its image");
          return false;
        }
        (HoldsUnknown(bytes) ? partial : full) = bytes;
        ++labels;
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  CLICKDIFF_RETURN_IF_ERROR(failed);
  const std::optional<std::string>& chosen = full ? full : partial;
  if (!chosen) return TrainingLabel{};
  Result<torch::Tensor> grid = BytesToGrid(*chosen, mapping);
  if (!grid.ok()) return grid.status();
  // Scribbles that all lie outside an image's cropped region mark nothing the model sees.
  if (!full && !grid->ne(kUnknownClass).any().item<bool>()) return TrainingLabel{};
  return TrainingLabel{*grid, !full};
}

// The final mask last served for a clicked image (nodes/mask_cache.h) on the grid, or an undefined
// tensor when there is none drawn with clicks. A stored mask that does not parse or fit the image
// is derived data: skipped with a warning (the next final mask replaces it). Errors: the store's.
Result<torch::Tensor> ServedMask(const Store& store, const std::string& image_key,
                                 const model::GridMapping& mapping, int64_t num_classes) {
  Result<std::optional<std::string>> bytes = store.Get(Family::kMasks, image_key);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return torch::Tensor();
  v1::MaskResult mask;
  if (!mask.ParseFromString(**bytes)) {
    spdlog::warn("the served mask of {} is corrupt: not used as its label", image_key);
    return torch::Tensor();
  }
  if (mask.click_revision() == 0 || mask.preview()) return torch::Tensor();
  const std::string& ids = mask.mask();
  std::string unfit;
  if (mask.width() != mapping.width || mask.height() != mapping.height ||
      static_cast<int64_t>(ids.size()) != mapping.width * mapping.height) {
    unfit = std::to_string(mask.width()) + "x" + std::to_string(mask.height()) + " with " +
            std::to_string(ids.size()) + " ids for a " + std::to_string(mapping.width) + "x" +
            std::to_string(mapping.height) + " image";
  } else if (std::any_of(ids.begin(), ids.end(),
                         [&](char c) { return static_cast<unsigned char>(c) >= num_classes; })) {
    unfit = "a class id outside [0, " + std::to_string(num_classes) + ")";
  }
  if (!unfit.empty()) {
    spdlog::warn("the served mask of {} is {}: not used as its label", image_key, unfit);
    return torch::Tensor();
  }
  return BytesToGrid(ids, mapping);
}

// The stored pseudo-label of an image for `learner`, when there is one at this grid.
Result<std::optional<StoredPseudo>> ReadPseudoLabel(const Store& store,
                                                    const std::string& image_key, Learner learner,
                                                    const torch::Tensor& grid, int64_t resolution) {
  Result<std::optional<std::string>> bytes =
      store.Get(Family::kPseudoLabels, PseudoLabelKey(image_key, learner));
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::optional<StoredPseudo>();
  v1::PseudoLabel label;
  if (!label.ParseFromString(**bytes)) {
    spdlog::warn("the pseudo-label of {} is corrupt: left out until redrawn", image_key);
    return std::optional<StoredPseudo>();
  }
  const size_t n = static_cast<size_t>(resolution * resolution);
  if (label.grid_resolution() != resolution || label.class_ids().size() != n ||
      label.confident().size() != n) {
    return std::optional<StoredPseudo>();  // drawn for another grid
  }
  auto from_bytes = [&](const std::string& b) {
    return torch::from_blob(const_cast<char*>(b.data()), {resolution, resolution}, torch::kUInt8);
  };
  StoredPseudo stored;
  model::TrainingExample& example = stored.example;
  example.image = grid;
  // Unsure pixels become unknown background, so only the confident ones weigh.
  example.known = from_bytes(label.confident()).to(torch::kBool);
  example.target = from_bytes(label.class_ids()).to(torch::kInt64) * example.known;
  stored.version = label.teacher_version();
  return std::optional<StoredPseudo>(std::move(stored));
}

}  // namespace

Result<torch::Tensor> BytesToGrid(const std::string& bytes, const model::GridMapping& mapping) {
  std::vector<int64_t> ids(bytes.size());
  std::transform(bytes.begin(), bytes.end(), ids.begin(),
                 [](char c) { return static_cast<int64_t>(static_cast<unsigned char>(c)); });
  Result<torch::Tensor> grid = model::LabelMapToGrid(ids.data(), mapping);
  if (!grid.ok()) return grid.status();
  return grid->clone();
}

std::string PseudoLabelKey(const std::string& image_key, Learner learner) {
  return learner == Learner::kStudent ? image_key : keys::Child(image_key, "twin");
}

v1::PseudoLabel MakePseudoLabel(const torch::Tensor& samples, int64_t num_classes,
                                double confidence, uint64_t teacher_version,
                                v1::PseudoLabel::Labeller labeller) {
  torch::NoGradGuard no_grad;
  const int64_t n = samples.size(0);
  const torch::Tensor votes = torch::one_hot(samples.to(torch::kCPU), num_classes).sum(0);
  auto [count, majority] = votes.max(-1);
  const torch::Tensor confident = count.to(torch::kDouble) >= confidence * static_cast<double>(n);
  const torch::Tensor ids = majority.to(torch::kUInt8).contiguous();
  const torch::Tensor sure = confident.to(torch::kUInt8).contiguous();
  v1::PseudoLabel label;
  label.set_teacher_version(teacher_version);
  label.set_labeller(labeller);
  label.set_grid_resolution(static_cast<uint32_t>(samples.size(1)));
  label.set_class_ids(ids.data_ptr<uint8_t>(), static_cast<size_t>(ids.numel()));
  label.set_confident(sure.data_ptr<uint8_t>(), static_cast<size_t>(sure.numel()));
  label.set_samples(static_cast<uint32_t>(n));
  label.set_timestamp_ms(NowMs());
  return label;
}

Result<model::GridMapping> StoredGridMapping(const v1::StoredImage& stored) {
  const v1::ImageEvent& event = stored.event();
  Result<model::GridMapping> mapping =
      model::MakeGridMapping(event.width(), event.height(), stored.grid_resolution(),
                             model::ImageRegion{stored.region_x(), stored.region_y(),
                                                stored.region_width(), stored.region_height()});
  if (!mapping.ok()) return mapping.status().WithContext(event.image_id());
  return mapping;
}

Result<torch::Tensor> StoredGrid(const v1::StoredImage& stored, int64_t channels) {
  const int64_t r = stored.grid_resolution();
  const int64_t have = std::max<int64_t>(1, stored.grid_channels());
  if (r < 1 || stored.grid_size() != have * r * r) {
    return DataLoss("the stored grid of image " + stored.event().image_id() + " holds " +
                    std::to_string(stored.grid_size()) + " values, not " + std::to_string(have) +
                    " x " + std::to_string(r) + " x " + std::to_string(r));
  }
  Result<torch::Tensor> grid =
      model::MatchChannels(model::GridFromValues(stored.grid().data(), r, have), channels);
  if (!grid.ok()) return grid.status().WithContext(stored.event().image_id());
  if (!torch::isfinite(*grid).all().item<bool>()) {
    return DataLoss("the stored grid of image " + stored.event().image_id() +
                    " holds values that are not finite");
  }
  return grid;
}

Result<std::vector<model::Click>> StoredClicks(const Store& store, const std::string& image_key,
                                               const std::string& image_id, uint64_t* corrupt) {
  std::vector<model::Click> clicks;
  Status failed = Status::Ok();
  Status clicks_read = store.Scan(
      Family::kClicks, keys::Under(image_key), [&](std::string_view key, std::string_view c) {
        v1::ClickEvent click;
        if (!click.ParseFromArray(c.data(), static_cast<int>(c.size()))) {
          if (corrupt != nullptr) {
            ++*corrupt;
            spdlog::warn("skipping the corrupt stored click {} of image {}", key, image_id);
            return true;
          }
          failed = DataLoss("a stored click of image " + image_id + " is corrupt");
          return false;
        }
        clicks.push_back(model::Click{click.x(), click.y(), click.class_id(), click.positive(),
                                      click.correction_gap()});
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(clicks_read);
  CLICKDIFF_RETURN_IF_ERROR(failed);
  return clicks;
}

Result<Replay> LoadReplay(const Store& store, int64_t resolution, int64_t num_classes,
                          int64_t image_channels, bool twin_labels) {
  return ReplayCache(resolution, num_classes, image_channels).Refresh(store, twin_labels);
}

ReplayCache::ReplayCache(int64_t resolution, int64_t num_classes, int64_t image_channels,
                         uint64_t budget_bytes)
    : resolution_(resolution),
      num_classes_(num_classes),
      image_channels_(image_channels),
      budget_bytes_(budget_bytes) {}

uint64_t ReplayCache::Bytes(const std::string& image_key, const Entry& entry) {
  auto size = [](const torch::Tensor& t) -> uint64_t { return t.defined() ? t.nbytes() : 0; };
  uint64_t bytes = sizeof(Entry) + (2 * image_key.size());  // the key twice: the entry's and map's
  // The image's grid is shared by its examples: counted once.
  auto labels = [&](const model::TrainingExample& x) { bytes += size(x.target) + size(x.known); };
  if (entry.example) {
    bytes += size(entry.example->example.image);
    labels(entry.example->example);
    if (entry.example->served) labels(*entry.example->served);
  }
  if (entry.unsupervised) {
    bytes += size(entry.unsupervised->grid);
    for (const auto* pseudo : {&entry.unsupervised->for_student, &entry.unsupervised->for_twin}) {
      if (pseudo->has_value()) labels((*pseudo)->example);
    }
  }
  return bytes;
}

void ReplayCache::Hold(const std::string& image_key, Entry entry, bool or_wait) {
  entry.bytes = Bytes(image_key, entry);
  entry.held_since = refreshes_;
  if (or_wait && budget_bytes_ > 0 && !entries_.empty() &&
      held_bytes_ + entry.bytes > budget_bytes_) {
    Wait(image_key, Waiting{entry.clicks, entry.labels});
    return;
  }
  held_bytes_ += entry.bytes;
  peak_bytes_ = std::max(peak_bytes_, held_bytes_);
  entries_.insert_or_assign(image_key, std::move(entry));
}

void ReplayCache::Wait(const std::string& image_key, Waiting waits) {
  waiting_clicks_ += waits.clicks;
  waiting_labels_ += waits.labels;
  waiting_[image_key] = waits;
}

void ReplayCache::Forget(const std::string& image_key) {
  if (auto held = entries_.find(image_key); held != entries_.end()) {
    held_bytes_ -= held->second.bytes;
    entries_.erase(held);
  }
  if (auto waits = waiting_.find(image_key); waits != waiting_.end()) {
    waiting_clicks_ -= waits->second.clicks;
    waiting_labels_ -= waits->second.labels;
    waiting_.erase(waits);
  }
}

void ReplayCache::Touch(const std::string& image_key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!full_) touched_.insert(image_key);
}

void ReplayCache::TouchMask(const std::string& image_key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!full_) mask_touched_.insert(image_key);
}

void ReplayCache::Invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  full_ = true;
  touched_.clear();
  mask_touched_.clear();
}

Result<std::optional<ReplayCache::Entry>> ReplayCache::Read(const Store& store,
                                                            const std::string& image_key,
                                                            std::string_view stored_image,
                                                            bool twin_labels) const {
  v1::StoredImage stored;
  if (!stored.ParseFromArray(stored_image.data(), static_cast<int>(stored_image.size()))) {
    return DataLoss("the stored record of image " + image_key + " is corrupt");
  }
  if (stored.grid_resolution() != resolution_) return std::optional<Entry>();
  const v1::ImageEvent& event = stored.event();
  Result<model::GridMapping> mapping = StoredGridMapping(stored);
  if (!mapping.ok()) return mapping.status();

  uint64_t corrupt_clicks = 0;  // skipped with a warning each
  Result<std::vector<model::Click>> stored_clicks =
      StoredClicks(store, image_key, event.image_id(), &corrupt_clicks);
  if (!stored_clicks.ok()) return stored_clicks.status();
  const std::vector<model::Click> clicks = model::ClicksToGrid(*stored_clicks, *mapping);
  uint64_t labels = 0;
  Result<TrainingLabel> label = ReadTrainingLabel(store, image_key, *mapping, labels);
  if (!label.ok()) return label.status().WithContext(event.image_id());

  Result<torch::Tensor> stored_grid = StoredGrid(stored, image_channels_);
  if (!stored_grid.ok()) return stored_grid.status();
  const torch::Tensor& grid = *stored_grid;
  Result<std::optional<model::TrainingExample>> example =
      model::MakeSupervisedExample(grid, clicks, label->grid, num_classes_, label->partial);
  if (!example.ok()) return example.status().WithContext(event.image_id());
  Entry entry;
  if (!example->has_value()) {
    UnsupervisedImage image{image_key, grid, std::nullopt, std::nullopt};
    for (Learner learner : {Learner::kStudent, Learner::kTwin}) {
      if (learner == Learner::kTwin && !twin_labels) continue;
      Result<std::optional<StoredPseudo>> pseudo =
          ReadPseudoLabel(store, image_key, learner, grid, resolution_);
      if (!pseudo.ok()) return pseudo.status();
      (learner == Learner::kStudent ? image.for_student : image.for_twin) =
          std::move(pseudo).value();
    }
    entry.unsupervised = std::move(image);
    return std::optional<Entry>(std::move(entry));
  }
  entry.clicks = clicks.size();
  entry.labels = labels;
  entry.mapping = *mapping;
  entry.example = ReplayExample{image_key, clicks.size() + labels, std::move(**example), {}};
  CLICKDIFF_RETURN_IF_ERROR(ReadServed(store, image_key, entry));
  return std::optional<Entry>(std::move(entry));
}

Status ReplayCache::ReadServed(const Store& store, const std::string& image_key,
                               Entry& entry) const {
  if (!entry.example || entry.example->example.dense || entry.example->example.partial) {
    return Status::Ok();
  }
  ReplayExample& e = *entry.example;
  e.served.reset();
  Result<torch::Tensor> mask = ServedMask(store, image_key, entry.mapping, num_classes_);
  if (!mask.ok()) return mask.status();
  if (!mask->defined()) return Status::Ok();
  Result<model::TrainingExample> served = model::LabelUnclicked(e.example, *mask, num_classes_);
  if (!served.ok()) {
    spdlog::warn("the served mask of {} is not used: {}", image_key, served.status().ToString());
    return Status::Ok();
  }
  e.served = std::move(served).value();
  return Status::Ok();
}

std::vector<model::TrainingExample> Taught(const ReplayExample& e, double share) {
  if (share <= 0 || !e.served) return {e.example};
  model::TrainingExample served = *e.served;
  served.weight = e.example.weight * std::min(1.0, share);
  if (share >= 1) return {served};
  model::TrainingExample clicks = e.example;
  clicks.weight *= 1 - share;
  return {clicks, served};
}

namespace {

// A failure to read one image's records that leaves that image out, not the replay.
bool RecordProblem(const Status& status) {
  return status.code() == StatusCode::kDataLoss || status.code() == StatusCode::kInvalidArgument;
}

}  // namespace

void ReplayCache::LeaveOut(const std::string& image_key, const Status& why,
                           std::map<std::string, std::string>& unreadable) const {
  auto known = unreadable_.find(image_key);
  if (known == unreadable_.end() || known->second != why.message()) {
    spdlog::warn("replay: leaving image {} out of training: {}", image_key, why.ToString());
  }
  unreadable[image_key] = why.message();
}

Status ReplayCache::ReadAll(const Store& store, bool twin_labels) {
  entries_.clear();
  waiting_.clear();
  held_bytes_ = waiting_clicks_ = waiting_labels_ = 0;
  turn_.clear();
  std::map<std::string, std::string> unreadable;
  Status failed = Status::Ok();
  Status scanned =
      store.Scan(Family::kImages, "", [&](std::string_view key, std::string_view value) {
        const std::string image_key(key);
        Result<std::optional<Entry>> entry = Read(store, image_key, value, twin_labels);
        ++last_read_;
        if (!entry.ok()) {
          if (!RecordProblem(entry.status())) {
            failed = entry.status();
            return false;
          }
          LeaveOut(image_key, entry.status(), unreadable);
          return true;
        }
        if (entry->has_value()) Hold(image_key, std::move(**entry), /*or_wait=*/true);
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  CLICKDIFF_RETURN_IF_ERROR(failed);
  unreadable_.swap(unreadable);
  return Status::Ok();
}

Status ReplayCache::ReadTouched(const Store& store, bool twin_labels) {
  std::set<std::string> touched, mask_touched;
  {
    std::lock_guard<std::mutex> lock(mu_);
    touched.swap(touched_);
    mask_touched.swap(mask_touched_);
  }
  // A new served mask alone: only that record is read again (every clicked image gets one per
  // model version).
  // A waiting image's mask is read with the rest of it at its turn.
  for (const std::string& image_key : mask_touched) {
    auto entry = entries_.find(image_key);
    if (touched.count(image_key) > 0 || entry == entries_.end()) continue;
    CLICKDIFF_RETURN_IF_ERROR(ReadServed(store, image_key, entry->second));
    held_bytes_ -= entry->second.bytes;
    entry->second.bytes = Bytes(image_key, entry->second);
    held_bytes_ += entry->second.bytes;
    peak_bytes_ = std::max(peak_bytes_, held_bytes_);
  }
  std::map<std::string, std::string> unreadable = unreadable_;
  size_t read = 0;
  for (const std::string& image_key : touched) {
    CLICKDIFF_RETURN_IF_ERROR(ReadAgain(store, image_key, twin_labels, unreadable));
    if (auto held = entries_.find(image_key); held != entries_.end()) held->second.touched = true;
    // A flood touches thousands of images between two reloads: the budget holds while they are
    // read, not only after.
    if (++read % kTouchedBetweenChecks == 0) LetWait();
  }
  CLICKDIFF_RETURN_IF_ERROR(TakeTurns(store, twin_labels, unreadable));
  unreadable_.swap(unreadable);
  return Status::Ok();
}

Status ReplayCache::ReadAgain(const Store& store, const std::string& image_key, bool twin_labels,
                              std::map<std::string, std::string>& unreadable) {
  Forget(image_key);
  unreadable.erase(image_key);
  Result<std::optional<std::string>> value = store.Get(Family::kImages, image_key);
  if (!value.ok()) return value.status();
  if (!value->has_value()) return Status::Ok();  // a click or label still waiting for its image
  Result<std::optional<Entry>> entry = Read(store, image_key, **value, twin_labels);
  ++last_read_;
  if (!entry.ok()) {
    if (!RecordProblem(entry.status())) return entry.status();
    LeaveOut(image_key, entry.status(), unreadable);
    return Status::Ok();
  }
  if (entry->has_value()) Hold(image_key, std::move(**entry), /*or_wait=*/false);
  return Status::Ok();
}

Status ReplayCache::TakeTurns(const Store& store, bool twin_labels,
                              std::map<std::string, std::string>& unreadable) {
  if (budget_bytes_ == 0) return Status::Ok();
  // The next waiting images, after the last one read back (in key order, wrapping around).
  const size_t turns = std::min(waiting_.size(), std::max<size_t>(8, entries_.size() / 8));
  std::vector<std::string> next;
  for (auto it = waiting_.upper_bound(turn_); next.size() < turns; ++it) {
    if (it == waiting_.end()) it = waiting_.begin();
    next.push_back(it->first);
  }
  for (const std::string& image_key : next) {
    CLICKDIFF_RETURN_IF_ERROR(ReadAgain(store, image_key, twin_labels, unreadable));
    turn_ = image_key;
  }
  LetWait();
  return Status::Ok();
}

void ReplayCache::LetWait() {
  if (budget_bytes_ == 0 || held_bytes_ <= budget_bytes_) return;
  // Over the budget: those held longest wait; of those read by one Refresh, the touched last.
  std::vector<std::tuple<uint64_t, bool, std::string>> order;
  order.reserve(entries_.size());
  for (const auto& [key, entry] : entries_)
    order.emplace_back(entry.held_since, entry.touched, key);
  std::sort(order.begin(), order.end());
  for (const auto& [since, touched, key] : order) {
    if (held_bytes_ <= budget_bytes_ || entries_.size() <= 1) break;
    const Entry& entry = entries_.at(key);
    const Waiting waits{entry.clicks, entry.labels};
    Forget(key);
    Wait(key, waits);
  }
}

Result<Replay> ReplayCache::Refresh(const Store& store, bool twin_labels) {
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    full = full_ || twin_labels_ != twin_labels;
    if (full) {
      // Writes touched from here on are read again next time: the scan may have passed them.
      full_ = false;
      touched_.clear();
      mask_touched_.clear();
    }
  }
  last_read_ = 0;
  peak_bytes_ = held_bytes_;
  ++refreshes_;
  Status read = full ? ReadAll(store, twin_labels) : ReadTouched(store, twin_labels);
  if (!read.ok()) {
    Invalidate();
    twin_labels_.reset();
    entries_.clear();
    waiting_.clear();
    held_bytes_ = waiting_clicks_ = waiting_labels_ = 0;
    unreadable_.clear();
    return read;
  }
  twin_labels_ = twin_labels;
  if (waiting_.empty() != !said_waiting_) {
    said_waiting_ = !waiting_.empty();
    if (said_waiting_) {
      spdlog::info(
          "replay: {} images held in memory ({:.0f} MiB, trainer.replay_budget_mb {}), {} more "
          "waiting in the store to take turns",
          entries_.size(), static_cast<double>(held_bytes_) / (1 << 20), budget_bytes_ >> 20,
          waiting_.size());
    } else {
      spdlog::info("replay: every image held in memory again ({})", entries_.size());
    }
  }
  Replay replay;
  replay.unreadable = unreadable_.size();
  replay.waiting = waiting_.size();
  replay.clicks = waiting_clicks_;
  replay.labels = waiting_labels_;
  for (const auto& [key, entry] : entries_) {
    replay.clicks += entry.clicks;
    replay.labels += entry.labels;
    if (entry.example) replay.examples.push_back(*entry.example);
    if (entry.unsupervised) replay.unsupervised.push_back(*entry.unsupervised);
  }
  return replay;
}

}  // namespace clickdiff
