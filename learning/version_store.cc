#include "learning/version_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "base/decimal.h"
#include "io/keys.h"
#include "model/checkpoint_store.h"

namespace clickdiff {

VersionStore::VersionStore(Store* store, std::string lineage, uint64_t keep_versions,
                           uint64_t keep_curve_versions)
    : store_(store),
      lineage_(std::move(lineage)),
      keep_versions_(keep_versions),
      keep_curve_versions_(keep_curve_versions) {}

std::string VersionStore::ModelKey(uint64_t version) { return keys::Version(version); }

Result<StoredVersions> VersionStore::LoadLatest(torch::Device device) const {
  StoredVersions stored;
  Result<std::optional<std::string>> current = store_->Get(Family::kMetadata, kCurrentVersionKey);
  if (!current.ok()) return current.status();
  if (!current->has_value()) return stored;
  try {
    stored.newest = std::stoull(**current);
  } catch (const std::exception&) {
    return DataLoss("store: the current model version '" + **current + "' is not a number");
  }
  Result<std::optional<std::string>> from = store_->Get(Family::kMetadata, kLineageKey);
  if (!from.ok()) return from.status();
  if (from->value_or("") != lineage_) {
    spdlog::warn("the store's model versions (up to {}) come from '{}', not '{}': starting anew",
                 stored.newest, from->value_or(""), lineage_);
    return stored;
  }
  // The newest version first, then the older ones still kept, newest first: a checkpoint that is
  // missing or unreadable is skipped (with a warning), so one bad record never blocks a start.
  std::vector<uint64_t> candidates = {stored.newest};
  Status scanned = store_->Scan(Family::kModels, "", [&](std::string_view key, std::string_view) {
    const std::optional<uint64_t> version = ParseDecimal<uint64_t>(key);  // not the twin's key
    if (version && *version < stored.newest) candidates.push_back(*version);
    return true;
  });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  std::sort(candidates.begin() + 1, candidates.end(), std::greater<>());
  std::optional<model::Segmenter> segmenter;
  uint64_t version = 0;
  std::string skipped;
  for (uint64_t candidate : candidates) {
    Result<std::optional<std::string>> bytes = store_->Get(Family::kModels, ModelKey(candidate));
    if (!bytes.ok()) return bytes.status();
    Result<model::Segmenter> loaded =
        bytes->has_value()
            ? model::CheckpointStore::FromBytes(
                  **bytes, "stored model version " + std::to_string(candidate), device)
            : Result<model::Segmenter>(
                  DataLoss("store: model version " + std::to_string(candidate) + " is missing"));
    if (loaded.ok()) {
      segmenter.emplace(std::move(loaded).value());
      version = candidate;
      break;
    }
    spdlog::warn("{}: trying an older version", loaded.status().ToString());
    skipped += (skipped.empty() ? "" : "; ") + loaded.status().message();
  }
  if (!segmenter) {
    return DataLoss("store: no stored model version can be read (" + skipped + ")");
  }
  ServingModel serving;
  serving.segmenter = std::make_shared<model::Segmenter>(std::move(*segmenter));
  serving.version = version;
  Result<std::optional<std::string>> update =
      store_->Get(Family::kMetadata, keys::ModelUpdate(version));
  if (!update.ok()) return update.status();
  v1::ModelUpdate record;
  if (update->has_value() && record.ParseFromString(**update)) {
    stored.steps = static_cast<int64_t>(record.train_steps());
    serving.clicks_seen = record.clicks_seen();
  }
  stored.model = std::move(serving);
  return stored;
}

Status VersionStore::Save(const VersionRecord& record,
                          const std::function<void(Store::Batch&)>& also) {
  const uint64_t version = record.update.model_version();
  Store::Batch batch;
  batch.Put(Family::kModels, ModelKey(version), record.checkpoint);
  batch.Put(Family::kMetadata, keys::ModelUpdate(version), record.update.SerializeAsString());
  batch.Put(Family::kMetadata, kCurrentVersionKey, std::to_string(version));
  batch.Put(Family::kMetadata, kLineageKey, lineage_);
  if (record.twin.has_value()) {
    batch.Put(Family::kModels, kTwinKey, *record.twin);
    batch.Put(Family::kMetadata, kTwinVersionKey, std::to_string(version));
  } else {
    batch.Delete(Family::kModels, kTwinKey);  // a twin of another mode's run would be stale
    batch.Delete(Family::kMetadata, kTwinVersionKey);
  }
  // Every version keep_versions back and older, not only that one: numbers may have gaps (a
  // restart numbers above the newest) and keep_versions may have been larger before.
  batch.DeleteOldVersions(Family::kModels, "", version, keep_versions_);
  // A kept model keeps its record too.
  const uint64_t keep_updates = keep_versions_ == 0 || keep_curve_versions_ == 0
                                    ? 0
                                    : std::max(keep_versions_, keep_curve_versions_);
  batch.DeleteOldVersions(Family::kMetadata, keys::ModelUpdatePrefix(), version, keep_updates);
  if (also) also(batch);
  return store_->Write(batch);
}

Result<std::optional<model::Segmenter>> VersionStore::LoadTwin(uint64_t version,
                                                               torch::Device device) const {
  Result<std::optional<std::string>> of = store_->Get(Family::kMetadata, kTwinVersionKey);
  if (!of.ok()) return of.status();
  if (of->value_or("") != std::to_string(version)) return std::optional<model::Segmenter>();
  Result<std::optional<std::string>> stored = store_->Get(Family::kModels, kTwinKey);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return std::optional<model::Segmenter>();
  Result<model::Segmenter> twin =
      model::CheckpointStore::FromBytes(**stored, "the stored twin", device);
  if (!twin.ok()) return twin.status();
  return std::optional<model::Segmenter>(std::move(twin).value());
}

}  // namespace clickdiff
