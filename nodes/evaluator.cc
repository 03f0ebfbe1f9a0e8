#include "nodes/evaluator.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <map>

#include "base/status.h"
#include "io/keys.h"
#include "model/metrics.h"
#include "nodes/intake.h"

namespace clickdiff {
namespace {

const std::string kImagePrefix = std::string("image") + '\0';
const std::string kVersionPrefix = std::string("version") + '\0';

std::string VersionKey(const std::string& dataset, uint64_t version) {
  return kVersionPrefix + dataset + '\0' + keys::Version(version);
}
std::string ImagePrefix(const std::string& dataset, uint64_t version) {
  return kImagePrefix + dataset + '\0' + keys::Version(version) + '\0';
}

// The clicks model version `version` had seen (its stored ModelUpdate; 0 for a model the service
// did not train).
Result<uint64_t> ClicksSeen(const Store& store, uint64_t version) {
  Result<std::optional<std::string>> bytes =
      store.Get(Family::kMetadata, keys::ModelUpdate(version));
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return uint64_t{0};
  v1::ModelUpdate update;
  if (!update.ParseFromString(**bytes)) {
    return DataLoss("store: the record of model version " + std::to_string(version) +
                    " is corrupt");
  }
  return update.clicks_seen();
}

torch::Tensor ClassIds(const std::string& bytes, int64_t height, int64_t width) {
  return torch::from_blob(const_cast<char*>(bytes.data()), {height, width}, torch::kUInt8)
      .to(torch::kInt64);
}

}  // namespace

// Running sums over the images scored at one version: per class over the images that scored it,
// and the mean Dice of images that had clicks and of images that had none (images whose classes
// were all skipped, truth and mask both empty, count for neither).
struct Evaluator::Sums {
  struct Class {
    double dice = 0, iou = 0, hd95 = 0, precision = 0, recall = 0;
    int64_t n = 0;
  };
  std::map<int32_t, Class> classes;
  double clicked = 0, unclicked = 0;
  int64_t n_clicked = 0, n_unclicked = 0, images = 0;

  // Adds (sign 1) or removes (sign -1) one image's record.
  void Add(const v1::Metrics& m, int sign) {
    images += sign;
    for (const v1::ClassScore& c : m.classes()) {
      Class& s = classes[c.class_id()];
      s.dice += sign * c.dice();
      s.iou += sign * c.iou();
      s.hd95 += sign * c.hd95();
      s.precision += sign * c.precision();
      s.recall += sign * c.recall();
      s.n += sign;
    }
    if (m.classes_size() == 0) return;
    if (m.click_revision() > 0) {
      clicked += sign * m.mean_dice();
      n_clicked += sign;
    } else {
      unclicked += sign * m.mean_dice();
      n_unclicked += sign;
    }
  }

  // The means, as a per-version Metrics (dataset, version and clicks seen left to the caller).
  v1::Metrics Means() const {
    v1::Metrics out;
    double dice = 0, iou = 0, hd95 = 0;
    int64_t counted = 0;
    for (const auto& [id, s] : classes) {
      if (s.n <= 0) continue;
      const double n = static_cast<double>(s.n);
      v1::ClassScore* c = out.add_classes();
      c->set_class_id(id);
      c->set_dice(s.dice / n);
      c->set_iou(s.iou / n);
      c->set_hd95(s.hd95 / n);
      c->set_precision(s.precision / n);
      c->set_recall(s.recall / n);
      dice += c->dice();
      iou += c->iou();
      hd95 += c->hd95();
      ++counted;
    }
    if (counted > 0) {
      out.set_mean_dice(dice / static_cast<double>(counted));
      out.set_mean_iou(iou / static_cast<double>(counted));
      out.set_mean_hd95(hd95 / static_cast<double>(counted));
    }
    out.set_images(static_cast<uint32_t>(images));
    out.set_clicked_images(static_cast<uint32_t>(n_clicked));
    out.set_clicked_mean_dice(n_clicked > 0 ? clicked / static_cast<double>(n_clicked) : 0);
    out.set_unclicked_images(static_cast<uint32_t>(n_unclicked));
    out.set_unclicked_mean_dice(n_unclicked > 0 ? unclicked / static_cast<double>(n_unclicked) : 0);
    return out;
  }
};

Evaluator::Evaluator(Store* store, KafkaProducer* producer, ZmqServer* zmq,
                     EvaluatorOptions options)
    : store_(store), producer_(producer), zmq_(zmq), options_(std::move(options)) {}

Evaluator::~Evaluator() = default;

// The sums of a version's stored records, read from the store the first time the version is
// scored (so a restart continues them); the oldest are forgotten beyond kRemembered versions.
Result<Evaluator::Sums*> Evaluator::VersionSums(const std::string& prefix) {
  auto found = sums_.find(prefix);
  if (found != sums_.end()) return found->second.get();
  auto sums = std::make_unique<Sums>();
  bool corrupt = false;
  CLICKDIFF_RETURN_IF_ERROR(
      store_->Scan(Family::kMetrics, prefix, [&](std::string_view, std::string_view value) {
        v1::Metrics m;
        corrupt = !m.ParseFromArray(value.data(), static_cast<int>(value.size()));
        if (!corrupt) sums->Add(m, 1);
        return !corrupt;
      }));
  if (corrupt) return DataLoss("store: a metrics record under " + prefix + " is corrupt");
  constexpr size_t kRemembered = 32;
  if (sums_.size() >= kRemembered) sums_.erase(sums_.begin());
  return sums_.emplace(prefix, std::move(sums)).first->second.get();
}

// The image's evaluation label, if any (of several, the last in key order).
Result<std::optional<v1::DenseMask>> Evaluator::Truth(const v1::MaskResult& mask) const {
  std::optional<v1::DenseMask> truth;
  bool corrupt = false;
  Status scanned =
      store_->Scan(Family::kLabels, keys::Under(keys::Image(mask.dataset(), mask.image_id())),
                   [&](std::string_view, std::string_view value) {
                     v1::LabelEvent label;
                     if (!label.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                       corrupt = true;
                       return false;
                     }
                     if (label.for_evaluation() && label.has_dense()) truth = label.dense();
                     return true;
                   });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  if (corrupt) return DataLoss("store: a label of " + mask.image_id() + " is corrupt");
  return truth;
}

Result<std::optional<v1::Metrics>> Evaluator::operator()(const v1::MaskResult& mask) {
  // A late mask of a version whose records are no longer kept is not scored (they would come back).
  if (auto newest = newest_.find(mask.dataset());
      newest != newest_.end() && options_.keep_versions > 0 &&
      mask.model_version() + options_.keep_versions <= newest->second) {
    return std::optional<v1::Metrics>();
  }
  Result<std::optional<v1::DenseMask>> truth = Truth(mask);
  if (!truth.ok()) return truth.status();
  if (!truth->has_value()) return std::optional<v1::Metrics>();
  const v1::DenseMask& t = **truth;
  const int64_t w = mask.width(), h = mask.height();
  if (t.width() != mask.width() || t.height() != mask.height() ||
      static_cast<int64_t>(mask.mask().size()) != w * h ||
      static_cast<int64_t>(t.class_ids().size()) != w * h) {
    return InvalidArgument("evaluator: the evaluation label of " + mask.image_id() + " is " +
                           std::to_string(t.width()) + "x" + std::to_string(t.height()) +
                           " but its mask is " + std::to_string(w) + "x" + std::to_string(h));
  }
  model::MetricsOptions metrics_options;
  metrics_options.num_classes = options_.num_classes;
  Result<model::ImageScores> scores = model::ScoreImage(
      ClassIds(mask.mask(), h, w), ClassIds(t.class_ids(), h, w), metrics_options);
  if (!scores.ok()) return scores.status().WithContext("evaluator: " + mask.image_id());
  Result<uint64_t> clicks_seen = ClicksSeen(*store_, mask.model_version());
  if (!clicks_seen.ok()) return clicks_seen.status();

  v1::Metrics image;
  image.set_dataset(mask.dataset());
  image.set_image_id(mask.image_id());
  image.set_model_version(mask.model_version());
  image.set_clicks_seen(*clicks_seen);
  image.set_click_revision(mask.click_revision());
  for (const model::ClassScores& c : scores->per_class) {
    if (c.images == 0) continue;
    v1::ClassScore* out = image.add_classes();
    out->set_class_id(static_cast<int32_t>(c.class_id));
    out->set_dice(c.dice);
    out->set_iou(c.iou);
    out->set_hd95(c.hd95);
    out->set_precision(c.precision);
    out->set_recall(c.recall);
  }
  if (image.classes_size() > 0) {  // else truth and mask are both empty: no score (not NaN)
    image.set_mean_dice(scores->mean.dice);
    image.set_mean_iou(scores->mean.iou);
    image.set_mean_hd95(scores->mean.hd95);
  }
  image.set_images(1);
  image.set_timestamp_ms(NowMs());
  // The version's sums lose the image's previous score at this version (a redraw) and gain this.
  const std::string prefix = ImagePrefix(mask.dataset(), mask.model_version());
  Result<Sums*> sums = VersionSums(prefix);
  if (!sums.ok()) return sums.status();
  Result<std::optional<std::string>> previous =
      store_->Get(Family::kMetrics, prefix + mask.image_id());
  if (!previous.ok()) return previous.status();
  v1::Metrics replaced;
  if (previous->has_value() && !replaced.ParseFromString(**previous)) {
    return DataLoss("store: the metrics of " + mask.image_id() + " are corrupt");
  }
  v1::Metrics version = [&] {
    Sums next = **sums;
    if (previous->has_value()) next.Add(replaced, -1);
    next.Add(image, 1);
    return next.Means();
  }();
  version.set_dataset(mask.dataset());
  version.set_model_version(mask.model_version());
  version.set_clicks_seen(*clicks_seen);
  version.set_timestamp_ms(image.timestamp_ms());
  Store::Batch batch;
  batch.Put(Family::kMetrics, prefix + mask.image_id(), image.SerializeAsString());
  batch.Put(Family::kMetrics, VersionKey(mask.dataset(), mask.model_version()),
            version.SerializeAsString());
  uint64_t& newest = newest_[mask.dataset()];
  const bool newer = mask.model_version() > newest;
  const std::string dataset_images = kImagePrefix + mask.dataset() + '\0';
  if (newer) {  // the records of versions no longer kept go (since start: every older one)
    batch.DeleteOldVersions(Family::kMetrics, dataset_images, mask.model_version(),
                            options_.keep_versions);
    batch.DeleteOldVersions(Family::kMetrics, kVersionPrefix + mask.dataset() + '\0',
                            mask.model_version(), options_.keep_curve_versions);
  }
  CLICKDIFF_RETURN_IF_ERROR(store_->Write(batch));
  if (newer) {
    newest = mask.model_version();
    if (options_.keep_versions > 0 && newest > options_.keep_versions) {  // their sums go too
      const std::string kept = ImagePrefix(mask.dataset(), newest - options_.keep_versions + 1);
      for (auto it = sums_.lower_bound(dataset_images); it != sums_.end() && it->first < kept;) {
        it = sums_.erase(it);
      }
    }
  }
  if (previous->has_value()) (*sums)->Add(replaced, -1);  // only once the store has it
  (*sums)->Add(image, 1);
  Emit(image, mask.dataset() + "/" + mask.image_id());
  Emit(version, mask.dataset() + "/v" + std::to_string(mask.model_version()));
  return std::optional<v1::Metrics>(std::move(version));
}

void Evaluator::Emit(const v1::Metrics& metrics, const std::string& key) {
  if (zmq_ != nullptr) zmq_->PublishMetrics(metrics);
  if (producer_ == nullptr || options_.metrics_topic.empty()) return;
  Status produced = producer_->Produce(options_.metrics_topic, key, metrics.SerializeAsString());
  if (!produced.ok()) spdlog::warn("metrics {}: {}", key, produced.ToString());
}

Result<std::vector<v1::Metrics>> Evaluator::VersionMetrics(const Store& store,
                                                           const std::string& dataset) {
  // By dataset, then version: the scored aggregates, with each version's fresh-click checks
  // joined in (alone, images 0, for a version that has checks but no scored mask).
  std::map<std::pair<std::string, uint64_t>, v1::Metrics> merged;
  bool corrupt = false;
  auto read = [&](const std::string& prefix, bool checks) {
    return store.Scan(Family::kMetrics, prefix, [&](std::string_view, std::string_view value) {
      v1::Metrics m;
      if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
        // A broken fresh-click record would stay broken (only a new click on that version
        // rewrites it): it is left out, not allowed to fail every query.
        if (checks) {
          spdlog::warn("store: a fresh-click record under {} is corrupt; left out of the metrics",
                       dataset.empty() ? "every dataset" : dataset);
          return true;
        }
        corrupt = true;
        return false;
      }
      v1::Metrics& entry = merged[{m.dataset(), m.model_version()}];
      if (!checks) {
        m.mutable_fresh_clicks()->Swap(entry.mutable_fresh_clicks());
        entry = std::move(m);
      } else {
        entry.set_dataset(m.dataset());
        entry.set_model_version(m.model_version());
        *entry.mutable_fresh_clicks() = m.fresh_clicks();
      }
      return true;
    });
  };
  CLICKDIFF_RETURN_IF_ERROR(
      read(dataset.empty() ? kVersionPrefix : kVersionPrefix + dataset + '\0', false));
  if (corrupt) return DataLoss("store: a per-version metrics record is corrupt");
  CLICKDIFF_RETURN_IF_ERROR(read(keys::ClickChecksPrefix(dataset), true));
  std::vector<v1::Metrics> out;
  for (auto& [key, m] : merged) {
    if (m.images() == 0) {  // checks alone: the clicks seen from the version's record
      Result<uint64_t> clicks_seen = ClicksSeen(store, m.model_version());
      if (!clicks_seen.ok()) return clicks_seen.status();
      m.set_clicks_seen(*clicks_seen);
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace clickdiff
