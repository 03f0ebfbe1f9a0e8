// Durable service state in RocksDB: one column family per kind of record, LZ4 (or zstd) compressed,
// written in atomic batches so that an event's effect and its consumer offset land together.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// Column families. Keys are chosen by the callers (see nodes/); the store treats them as bytes.
enum class Family {
  kImages,        // dataset/image_id -> ImageEvent (preprocessed payload)
  kClicks,        // dataset/image_id/click_id -> ClickEvent
  kLabels,        // dataset/image_id/label_id -> LabelEvent
  kPseudoLabels,  // dataset/image_id -> pseudo-label record
  kMasks,         // dataset/image_id -> latest MaskResult (cache)
  kModels,        // model version -> checkpoint bytes
  kOffsets,       // topic/partition -> next offset to consume
  kMetadata,      // anything else (counters, click revisions, ...)
};
const char* FamilyName(Family family);

class Store {
 public:
  // Opens (creating if missing) the database at config.path with every column family. A database
  // held by another process fails with a message naming the path and the lock; a corrupt one
  // with RocksDB's reason.
  static Result<std::unique_ptr<Store>> Open(const StoreConfig& config);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A set of writes applied atomically by Write. Not thread-safe; build one per event.
  class Batch {
   public:
    Batch();
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;
    void Put(Family family, std::string_view key, std::string_view value);
    void Delete(Family family, std::string_view key);
    // Records that every record of topic/partition before `next_offset` has been applied.
    void SetOffset(std::string_view topic, int32_t partition, int64_t next_offset);
    bool empty() const;

   private:
    friend class Store;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  // Thread-safe. Honors config.sync (fsync of the write-ahead log).
  Status Write(Batch& batch);
  // Thread-safe point lookup: nullopt when absent.
  Result<std::optional<std::string>> Get(Family family, std::string_view key) const;
  Result<std::optional<int64_t>> GetOffset(std::string_view topic, int32_t partition) const;
  // Visits records whose key starts with `prefix`, in key order, until `visit` returns false.
  Status Scan(Family family, std::string_view prefix,
              const std::function<bool(std::string_view key, std::string_view value)>& visit) const;
  // Number of records in `family` with keys starting with `prefix` (a scan).
  Result<uint64_t> Count(Family family, std::string_view prefix = "") const;
  // Flushes memtables (used before a clean exit so the next open replays nothing).
  Status Flush();
  const std::string& path() const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
