#include "io/store.h"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "base/decimal.h"
#include "io/keys.h"

namespace clickdiff {
namespace {

namespace fs = std::filesystem;

constexpr std::array<Family, 9> kFamilies = {
    Family::kImages, Family::kClicks,  Family::kLabels,   Family::kPseudoLabels, Family::kMasks,
    Family::kModels, Family::kOffsets, Family::kMetadata, Family::kMetrics,
};
constexpr size_t kFamilyCount = kFamilies.size();

// Values at least this large in the "models" family go to blob files: checkpoints are megabytes,
// and keeping them out of the LSM tree stops every compaction from rewriting them.
constexpr uint64_t kModelBlobMinBytes = uint64_t{256} << 10;

// Index of `family` into kFamilies, or kFamilyCount for a value outside the enum (a caller's cast).
size_t FamilyIndex(Family family) {
  const auto index = static_cast<size_t>(family);
  return index < kFamilyCount ? index : kFamilyCount;
}

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// Offsets key: topic + '/' + the partition as exactly 10 decimal digits (its uint32 bit pattern,
// which covers every int32). The suffix has a fixed length, so a key splits back into one
// (topic, partition) pair even when the topic itself contains '/' or digits, and one topic's
// partitions sort together in numeric order.
std::string OffsetKey(std::string_view topic, int32_t partition) {
  char digits[16];
  std::snprintf(digits, sizeof(digits), "%010u", static_cast<uint32_t>(partition));
  std::string key(topic);
  key += '/';
  key += digits;
  return key;
}

bool Contains(const std::string& text, std::string_view needle) {
  return text.find(needle) != std::string::npos;
}

// RocksDB reports a held LOCK file as a plain IOError; these are the posix Env's two wordings
// (another handle in this process, another process).
bool IsLockError(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  const std::string text = s.ToString();
  return Contains(text, "lock hold by current process") || Contains(text, "While lock file") ||
         Contains(text, "/LOCK:");
}

// Turns a RocksDB status into ours; `what` says what was being done and names the database path.
Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  const std::string detail = what + ": " + s.ToString();
  if (IsLockError(s)) {
    return FailedPrecondition(detail +
                              " (the database is locked: another clickdiffd, or another open "
                              "Store in this process, probably holds it)");
  }
  if (s.IsCorruption()) return DataLoss(detail);
  if (s.IsNoSpace()) return ResourceExhausted(detail);
  if (s.IsNotFound()) return NotFound(detail);
  if (s.IsInvalidArgument()) return InvalidArgument(detail);
  if (s.IsNotSupported()) return FailedPrecondition(detail);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return Unavailable(detail);
  return Internal(detail);
}

Result<rocksdb::CompressionType> ParseCompression(const std::string& name) {
  rocksdb::CompressionType type;
  if (name == "lz4") {
    type = rocksdb::kLZ4Compression;
  } else if (name == "zstd") {
    type = rocksdb::kZSTD;
  } else if (name == "none") {
    return rocksdb::kNoCompression;
  } else {
    return InvalidArgument("store.compression: unknown value " + Quoted(name) +
                           " (expected lz4, zstd or none)");
  }
  const std::vector<rocksdb::CompressionType> supported = rocksdb::GetSupportedCompressions();
  if (std::find(supported.begin(), supported.end(), type) != supported.end()) return type;
  std::string names;
  for (rocksdb::CompressionType t : supported) {
    std::string one;
    if (!rocksdb::GetStringFromCompressionType(&one, t).ok()) one = std::to_string(t);
    names += (names.empty() ? "" : ", ") + one;
  }
  return FailedPrecondition("store.compression: " + Quoted(name) +
                            " is not supported by this RocksDB build (it supports: " +
                            (names.empty() ? "no compression" : names) + "); choose another");
}

// Destroys a column family handle through the DB that made it, as RocksDB requires.
struct HandleDeleter {
  rocksdb::DB* db = nullptr;
  void operator()(rocksdb::ColumnFamilyHandle* handle) const {
    const rocksdb::Status s = db->DestroyColumnFamilyHandle(handle);
    if (!s.ok()) spdlog::warn("store: destroying a column family handle: {}", s.ToString());
  }
};
using HandlePtr = std::unique_ptr<rocksdb::ColumnFamilyHandle, HandleDeleter>;

}  // namespace

const char* FamilyName(Family family) {
  switch (family) {
    case Family::kImages:
      return "images";
    case Family::kClicks:
      return "clicks";
    case Family::kLabels:
      return "labels";
    case Family::kPseudoLabels:
      return "pseudo_labels";
    case Family::kMasks:
      return "masks";
    case Family::kModels:
      return "models";
    case Family::kOffsets:
      return "offsets";
    case Family::kMetadata:
      return "metadata";
    case Family::kMetrics:
      return "metrics";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Batch

// The writes are kept as owned operations rather than in a rocksdb::WriteBatch because a Batch is
// built without a Store, and a WriteBatch needs the store's column family handles.
struct Store::Batch::Impl {
  struct Op {
    bool is_delete = false;
    Family family = Family::kMetadata;
    std::string key;
    std::string value;  // a range deletion's end key
    bool is_range = false;
  };
  std::vector<Op> ops;
};

Store::Batch::Batch() : impl_(std::make_unique<Impl>()) {}
Store::Batch::~Batch() = default;
Store::Batch::Batch(Batch&&) noexcept = default;
Store::Batch& Store::Batch::operator=(Batch&&) noexcept = default;

void Store::Batch::Put(Family family, std::string_view key, std::string_view value) {
  if (!impl_) impl_ = std::make_unique<Impl>();  // a moved-from batch starts over empty
  impl_->ops.push_back({false, family, std::string(key), std::string(value)});
}

void Store::Batch::DeleteRange(Family family, std::string_view begin, std::string_view end) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  impl_->ops.push_back({true, family, std::string(begin), std::string(end), true});
}

void Store::Batch::DeleteOldVersions(Family family, std::string_view prefix, uint64_t version,
                                     uint64_t keep) {
  if (keep == 0 || version <= keep) return;
  const std::string head(prefix);
  DeleteRange(family, head + keys::Version(0), head + keys::Version(version - keep + 1));
}

void Store::Batch::Delete(Family family, std::string_view key) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  impl_->ops.push_back({true, family, std::string(key), std::string()});
}

void Store::Batch::SetOffset(std::string_view topic, int32_t partition, int64_t next_offset) {
  Put(Family::kOffsets, OffsetKey(topic, partition), std::to_string(next_offset));
}

bool Store::Batch::empty() const { return !impl_ || impl_->ops.empty(); }

uint64_t Store::Batch::Puts(Family family) const {
  if (!impl_) return 0;
  return static_cast<uint64_t>(
      std::count_if(impl_->ops.begin(), impl_->ops.end(),
                    [&](const auto& op) { return !op.is_delete && op.family == family; }));
}

// ---------------------------------------------------------------------------------------------
// Store

struct Store::Impl {
  StoreConfig config;
  // Declared before the handles so that it is destroyed after them (handles need the DB).
  std::unique_ptr<rocksdb::DB> db;
  HandlePtr default_family;
  std::array<HandlePtr, kFamilyCount> families;

  ~Impl() {
    // RocksDB requires every column family handle to be destroyed before the DB.
    for (HandlePtr& handle : families) handle.reset();
    default_family.reset();
    if (db) {
      const rocksdb::Status s = db->Close();
      if (!s.ok() && !s.IsNotSupported()) {
        spdlog::warn("store: closing {}: {}", config.path, s.ToString());
      }
    }
  }

  // The handle of `family`, or nullptr for a value outside the enum.
  rocksdb::ColumnFamilyHandle* Handle(Family family) const {
    const size_t index = FamilyIndex(family);
    return index < kFamilyCount ? families[index].get() : nullptr;
  }
  Status BadFamily(Family family) const {
    return InvalidArgument("store " + config.path + ": no column family number " +
                           std::to_string(static_cast<int>(family)));
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const StoreConfig& config) {
  if (config.path.empty()) return InvalidArgument("store.path: must not be empty");
  if (config.block_cache_mb < 0) {
    return InvalidArgument("store.block_cache_mb: must be >= 0, got " +
                           std::to_string(config.block_cache_mb));
  }
  if (config.write_buffer_mb < 0) {
    return InvalidArgument("store.write_buffer_mb: must be >= 0, got " +
                           std::to_string(config.write_buffer_mb));
  }
  Result<rocksdb::CompressionType> compression = ParseCompression(config.compression);
  if (!compression.ok()) return compression.status();

  // The database directory is created here, readable by its owner only (it holds every image);
  // an existing one keeps the permissions it has.
  {
    const fs::path dir(config.path);
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
      if (!dir.parent_path().empty()) fs::create_directories(dir.parent_path(), ec);
      if (!ec) fs::create_directory(dir, ec);
      if (!ec) fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
      if (ec) {
        return Unavailable("store " + config.path +
                           ": cannot create the directory: " + ec.message());
      }
    }
  }

  rocksdb::BlockBasedTableOptions table;
  if (config.block_cache_mb == 0) {
    table.no_block_cache = true;
  } else {
    // One cache shared by every family, so block_cache_mb bounds the whole store.
    table.block_cache = rocksdb::NewLRUCache(static_cast<size_t>(config.block_cache_mb) << 20);
  }
  // Point lookups (dedupe by click id, offsets, cached masks) mostly miss or hit one file; a
  // bloom filter lets them skip the other files without reading a block.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));

  rocksdb::ColumnFamilyOptions family_options;
  family_options.compression = *compression;
  family_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, family_options);
  for (Family family : kFamilies) {
    rocksdb::ColumnFamilyOptions options = family_options;
    if (family == Family::kModels) {
      options.enable_blob_files = true;
      options.min_blob_size = kModelBlobMinBytes;
      options.blob_compression_type = *compression;
      // Without it, blobs of deleted or overwritten checkpoints would never be reclaimed.
      options.enable_blob_garbage_collection = true;
    }
    descriptors.emplace_back(FamilyName(family), options);
  }

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  // Every family's memtables together: a flood of writes flushes instead of growing memory.
  db_options.db_write_buffer_size = static_cast<size_t>(config.write_buffer_mb) << 20;

  auto impl = std::make_unique<Impl>();
  impl->config = config;
  std::vector<rocksdb::ColumnFamilyHandle*> raw_handles;
  rocksdb::DB* raw_db = nullptr;
  const rocksdb::Status s =
      rocksdb::DB::Open(db_options, config.path, descriptors, &raw_handles, &raw_db);
  impl->db.reset(raw_db);
  // Own the handles before anything can return, so that a failure below still frees them.
  for (size_t i = 0; i < raw_handles.size(); ++i) {
    HandlePtr handle(raw_handles[i], HandleDeleter{raw_db});
    if (i == 0) {
      impl->default_family = std::move(handle);
    } else if (i - 1 < kFamilyCount) {
      impl->families[i - 1] = std::move(handle);
    }
  }
  if (!s.ok()) return FromRocks(s, "opening store " + config.path);
  if (raw_handles.size() != descriptors.size()) {
    return Internal("opening store " + config.path + ": RocksDB returned " +
                    std::to_string(raw_handles.size()) + " column family handles, expected " +
                    std::to_string(descriptors.size()));
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Status Store::Write(Batch& batch) {
  if (batch.empty()) return Status::Ok();
  rocksdb::WriteBatch write_batch;
  for (const Batch::Impl::Op& op : batch.impl_->ops) {
    rocksdb::ColumnFamilyHandle* handle = impl_->Handle(op.family);
    if (handle == nullptr) return impl_->BadFamily(op.family);
    const rocksdb::Status s = op.is_range    ? write_batch.DeleteRange(handle, op.key, op.value)
                              : op.is_delete ? write_batch.Delete(handle, op.key)
                                             : write_batch.Put(handle, op.key, op.value);
    if (!s.ok()) return FromRocks(s, "building a batch for store " + impl_->config.path);
  }
  rocksdb::WriteOptions options;
  options.sync = impl_->config.sync;
  return FromRocks(impl_->db->Write(options, &write_batch),
                   "writing a batch to store " + impl_->config.path);
}

Result<std::optional<std::string>> Store::Get(Family family, std::string_view key) const {
  rocksdb::ColumnFamilyHandle* handle = impl_->Handle(family);
  if (handle == nullptr) return impl_->BadFamily(family);
  std::string value;
  const rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), handle, key, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) {
    return FromRocks(s, "reading " + std::string(FamilyName(family)) + " key " + Quoted(key) +
                            " from store " + impl_->config.path);
  }
  return std::optional<std::string>(std::move(value));
}

Result<std::optional<int64_t>> Store::GetOffset(std::string_view topic, int32_t partition) const {
  Result<std::optional<std::string>> value = Get(Family::kOffsets, OffsetKey(topic, partition));
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<int64_t>();
  const std::string& text = **value;
  std::optional<int64_t> offset = ParseDecimal<int64_t>(text);
  if (!offset) {
    return DataLoss("store " + impl_->config.path + ": offset of topic " + Quoted(topic) +
                    " partition " + std::to_string(partition) +
                    " is not a decimal integer: " + Quoted(text));
  }
  return offset;
}

Result<std::optional<int64_t>> Store::StartingOffset(std::string_view topic, int32_t partition,
                                                     const std::string& log_id, bool* changed) {
  if (changed != nullptr) *changed = false;
  Result<std::optional<int64_t>> offset = GetOffset(topic, partition);
  if (!offset.ok() || log_id.empty()) return offset;
  const std::string log_key = "offset-log:" + OffsetKey(topic, partition);
  Result<std::optional<std::string>> stored_log = Get(Family::kMetadata, log_key);
  if (!stored_log.ok()) return stored_log.status();
  if (stored_log->has_value() && **stored_log == log_id) return offset;
  Batch batch;
  batch.Put(Family::kMetadata, log_key, log_id);
  const bool other_log = stored_log->has_value() && offset->has_value();
  if (other_log) batch.Delete(Family::kOffsets, OffsetKey(topic, partition));
  CLICKDIFF_RETURN_IF_ERROR(Write(batch));
  if (!other_log) return offset;  // a first read of this log, or an offset of before log ids
  if (changed != nullptr) *changed = true;
  return std::optional<int64_t>();
}

Status Store::Scan(
    Family family, std::string_view prefix,
    const std::function<bool(std::string_view key, std::string_view value)>& visit) const {
  rocksdb::ColumnFamilyHandle* handle = impl_->Handle(family);
  if (handle == nullptr) return impl_->BadFamily(family);

  // The smallest key above every key that starts with `prefix`: drop trailing 0xff bytes and
  // increment the last one. It lets RocksDB stop at the end of the prefix instead of stepping over
  // the tombstones that follow it. A prefix of only 0xff bytes has no such bound.
  std::string upper(prefix);
  while (!upper.empty() && static_cast<unsigned char>(upper.back()) == 0xff) upper.pop_back();
  if (!upper.empty())
    upper.back() = static_cast<char>(static_cast<unsigned char>(upper.back()) + 1);
  const rocksdb::Slice upper_slice(upper);  // must outlive the iterator

  rocksdb::ReadOptions options;
  if (!upper.empty()) options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(options, handle));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    const rocksdb::Slice key = it->key();
    const std::string_view key_view(key.data(), key.size());
    if (key_view.substr(0, prefix.size()) != prefix) break;
    const rocksdb::Slice value = it->value();
    if (!visit(key_view, std::string_view(value.data(), value.size()))) break;
  }
  return FromRocks(it->status(), "scanning " + std::string(FamilyName(family)) + " prefix " +
                                     Quoted(prefix) + " in store " + impl_->config.path);
}

Result<uint64_t> Store::Count(Family family, std::string_view prefix) const {
  uint64_t count = 0;
  CLICKDIFF_RETURN_IF_ERROR(Scan(family, prefix, [&count](std::string_view, std::string_view) {
    ++count;
    return true;
  }));
  return count;
}

Status Store::Flush() {
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  handles.push_back(impl_->default_family.get());
  for (const HandlePtr& handle : impl_->families) handles.push_back(handle.get());
  return FromRocks(impl_->db->Flush(rocksdb::FlushOptions(), handles),
                   "flushing store " + impl_->config.path);
}

const std::string& Store::path() const { return impl_->config.path; }

Result<std::string> Store::Identity() const {
  std::string identity;
  const rocksdb::Status s = impl_->db->GetDbIdentity(identity);
  if (!s.ok()) return FromRocks(s, "reading the identity of store " + impl_->config.path);
  return identity;
}

}  // namespace clickdiff
