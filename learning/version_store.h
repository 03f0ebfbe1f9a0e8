// learning/version_store.h — the model versions the service trained, kept in RocksDB.
//
// Each version is its checkpoint (kModels, io/keys.h Version) and its ModelUpdate record; the
// current version number and the lineage (where the versions come from: method, starting model,
// classes, grid) are in kMetadata, and the co-trained twin of teacher mode "twin" is stored with
// the current version. Save writes all of a version in one atomic batch and deletes the version
// `keep_versions` back; LoadLatest is what a restart resumes. Thread-safe as the Store is: every
// call is point reads or one batch.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "base/status.h"
#include "io/store.h"
#include "learning/model_slot.h"
#include "model/segmenter.h"
#include "schemas/events.pb.h"

namespace clickdiff {

// What the store holds for a restart.
struct StoredVersions {
  std::optional<ServingModel> model;  // the newest readable version, when it is of this lineage
  int64_t steps = 0;                  // training steps behind it (0 when unknown)
  uint64_t newest = 0;                // the newest version number stored, of any lineage
};

// One version as Save writes it.
struct VersionRecord {
  v1::ModelUpdate update;           // its model_version is the version's number
  std::string checkpoint;           // model::CheckpointStore::ToBytes of the served model
  std::optional<std::string> twin;  // the twin's checkpoint (teacher mode twin); none: deleted
};

class VersionStore {
 public:
  // `store` is not owned and must outlive this. `lineage` is stored with every version; a store
  // whose versions have another lineage is not resumed. keep_versions 0 keeps every version;
  // keep_curve_versions (0: all) is how many versions' ModelUpdate records are kept (the learning
  // curve's clicks seen), never fewer than keep_versions.
  VersionStore(Store* store, std::string lineage, uint64_t keep_versions,
               uint64_t keep_curve_versions = 0);

  // The kModels key of a version's checkpoint.
  static std::string ModelKey(uint64_t version);
  static constexpr const char* kCurrentVersionKey = "model:current";
  static constexpr const char* kLineageKey = "model:lineage";
  // The kModels key of the co-trained twin, and the kMetadata key of the version it belongs to.
  static constexpr const char* kTwinKey = "model:twin";
  static constexpr const char* kTwinVersionKey = "model:twin:version";

  // The newest readable version stored, built on `device` when it is of this lineage: when the
  // newest checkpoint is missing or unreadable, the newest older one that reads (a warning says
  // so; `newest` stays the newest number, so new versions are numbered above it). Errors: store
  // failures; a current version that is not a number, or no checkpoint of it or before it that
  // reads (kDataLoss).
  Result<StoredVersions> LoadLatest(torch::Device device) const;
  // Writes the version, its update record, the current version and the lineage, the twin (or
  // deletes a twin of an earlier run), and deletes every version keep_versions back and older,
  // atomically;
  // `also` adds to the same batch (the version's announcement: io/outbox.h).
  Status Save(const VersionRecord& record, const std::function<void(Store::Batch&)>& also = {});
  // The twin stored with `version`: none when there is none, or it belongs to another version.
  // Errors: store failures; an unreadable checkpoint (the caller may start another twin).
  Result<std::optional<model::Segmenter>> LoadTwin(uint64_t version, torch::Device device) const;

  const std::string& lineage() const { return lineage_; }

 private:
  Store* store_;
  std::string lineage_;
  uint64_t keep_versions_;
  uint64_t keep_curve_versions_;
};

}  // namespace clickdiff
