#include "learning/version_store.h"

#include <spdlog/spdlog.h>

#include "io/keys.h"
#include "model/checkpoint_store.h"

namespace clickdiff {

VersionStore::VersionStore(Store* store, std::string lineage, uint64_t keep_versions)
    : store_(store), lineage_(std::move(lineage)), keep_versions_(keep_versions) {}

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
  Result<std::optional<std::string>> bytes = store_->Get(Family::kModels, ModelKey(stored.newest));
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) {
    return DataLoss("store: model version " + std::to_string(stored.newest) + " is missing");
  }
  Result<model::Segmenter> segmenter = model::CheckpointStore::FromBytes(
      **bytes, "stored model version " + std::to_string(stored.newest), device);
  if (!segmenter.ok()) return segmenter.status();
  ServingModel serving;
  serving.segmenter = std::make_shared<model::Segmenter>(std::move(segmenter).value());
  serving.version = stored.newest;
  Result<std::optional<std::string>> update =
      store_->Get(Family::kMetadata, keys::ModelUpdate(stored.newest));
  if (!update.ok()) return update.status();
  v1::ModelUpdate record;
  if (update->has_value() && record.ParseFromString(**update)) {
    stored.steps = static_cast<int64_t>(record.train_steps());
    serving.clicks_seen = record.clicks_seen();
  }
  stored.model = std::move(serving);
  return stored;
}

Status VersionStore::Save(const VersionRecord& record) {
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
  if (keep_versions_ > 0 && version > keep_versions_) {
    batch.Delete(Family::kModels, ModelKey(version - keep_versions_));
  }
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
