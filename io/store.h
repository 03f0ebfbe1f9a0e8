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

// Column families. Keys are chosen by the callers (io/keys.h joins ids with a NUL byte); the
// store treats them as bytes and keeps them in bytewise order. Callers end each prefix with their
// separator so that a prefix scan of image "img1" cannot match "img10".
enum class Family {
  kImages,        // dataset, image_id -> StoredImage (event as received + model grid)
  kClicks,        // dataset, image_id, click_id -> ClickEvent
  kLabels,        // dataset, image_id, label_id -> LabelEvent
  kPseudoLabels,  // dataset, image_id -> pseudo-label record
  kMasks,         // dataset, image_id -> latest MaskResult (cache)
  kModels,        // model version -> checkpoint bytes
  kOffsets,       // topic/partition -> next offset to consume
  kMetadata,      // anything else (clicks waiting for their image, ...)
  kMetrics,       // evaluation: per image and model version, and per version (nodes/evaluator.h)
};
const char* FamilyName(Family family);

// Owns the RocksDB handle and its column families; they are closed by the destructor, which must
// not run while another thread still uses the Store. Every const method, Write and Flush are
// thread-safe (RocksDB synchronises them); a Store is immutable after Open.
class Store {
 public:
  // Opens (creating if missing) the database at config.path with every column family. A database
  // held by another process fails with a message naming the path and the lock; a corrupt one
  // with RocksDB's reason. Errors:
  //   InvalidArgument     empty path, negative block_cache_mb, compression not lz4|zstd|none;
  //   FailedPrecondition  the LOCK file is held (another clickdiffd, or another Store of the same
  //                       path in this process), or the compression is missing from this RocksDB
  //                       build; the message names the path;
  //   DataLoss            corrupt CURRENT/MANIFEST/table files, with RocksDB's reason and the path;
  //   Unavailable         other IO errors (e.g. the parent directory cannot be created).
  // Parent directories of config.path are created. block_cache_mb is one LRU cache shared by all
  // families (0: no block cache). Values of 256 KiB and more in kModels live in blob files.
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
    // Deletes every key of `family` from `begin` up to, not including, `end` (bytewise order).
    void DeleteRange(Family family, std::string_view begin, std::string_view end);
    // Deletes every key of `family` under prefix + keys::Version(n) for each model version n
    // `keep` back from `version` and older (n < version - keep + 1): the records of versions a
    // store keeps only the last `keep` of. Nothing when keep is 0 (all kept) or version <= keep.
    void DeleteOldVersions(Family family, std::string_view prefix, uint64_t version, uint64_t keep);
    // Records that every record of topic/partition before `next_offset` has been applied.
    // Stored in kOffsets under topic + '/' + the partition as 10 zero-padded decimal digits (its
    // uint32 bit pattern), so any topic name, including ones with '/' or digits, maps to a
    // distinct key; the value is the offset in decimal ASCII.
    void SetOffset(std::string_view topic, int32_t partition, int64_t next_offset);
    bool empty() const;
    // Puts to `family` so far (a caller that writes only new keys counts new records with it).
    uint64_t Puts(Family family) const;

   private:
    friend class Store;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  // Applies every write of `batch` or none of them. Thread-safe. Honors config.sync (fsync of the
  // write-ahead log). The batch is not modified, so it can be written again after an error.
  Status Write(Batch& batch);
  // Thread-safe point lookup: nullopt when absent. GetOffset fails with DataLoss when the stored
  // value is not a decimal integer.
  Result<std::optional<std::string>> Get(Family family, std::string_view key) const;
  Result<std::optional<int64_t>> GetOffset(std::string_view topic, int32_t partition) const;
  // Where to start reading topic/partition of the log `log_id` (the Kafka cluster's id): the
  // stored offset when it was stored for that log (or when no log was recorded yet, which then
  // records `log_id`); nullopt, to read from the start, when none is stored or it belongs to
  // another log. In that case the old offset is deleted and `log_id` recorded in one write, so the
  // new log is applied from its first record (ids make repeats idempotent) even if its end has
  // passed the old offset; `*changed` (optional) tells. An empty `log_id` (unknown) checks
  // nothing. Log ids are stored in kMetadata under "offset-log:" + the offset's key.
  Result<std::optional<int64_t>> StartingOffset(std::string_view topic, int32_t partition,
                                                const std::string& log_id, bool* changed = nullptr);
  // Visits records whose key starts with `prefix`, in bytewise key order, until `visit` returns
  // false. End `prefix` with a separator (see Family). The views passed to `visit` are valid only
  // during that call. Reads a consistent snapshot taken when the scan starts.
  Status Scan(Family family, std::string_view prefix,
              const std::function<bool(std::string_view key, std::string_view value)>& visit) const;
  // Number of records in `family` with keys starting with `prefix` (a scan).
  Result<uint64_t> Count(Family family, std::string_view prefix = "") const;
  // Flushes memtables (used before a clean exit so the next open replays nothing).
  Status Flush();
  const std::string& path() const;
  // The database's own identity (RocksDB's IDENTITY file, a UUID written when it was created):
  // the same across reopenings of this store, different for any other store, a copy aside.
  Result<std::string> Identity() const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
