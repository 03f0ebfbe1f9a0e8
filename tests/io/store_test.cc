#include "io/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace clickdiff {
namespace {

namespace fs = std::filesystem;

constexpr Family kAllFamilies[] = {
    Family::kImages, Family::kClicks,  Family::kLabels,   Family::kPseudoLabels, Family::kMasks,
    Family::kModels, Family::kOffsets, Family::kMetadata, Family::kMetrics,
};

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

class StoreTest : public testing::Test {
 protected:
  void SetUp() override {
    // The pid keeps parallel runs of this binary (other checkouts, ctest -j) apart.
    const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("clickdiff_store_" + std::string(info->name()) + "_" + std::to_string(getpid()));
    fs::remove_all(root_);
    config_.path = (root_ / "nested" / "db").string();  // parents do not exist yet
    config_.block_cache_mb = 8;
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<Store> OpenOrDie(const StoreConfig& config) {
    Result<std::unique_ptr<Store>> store = Store::Open(config);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::unique_ptr<Store> OpenOrDie() { return OpenOrDie(config_); }

  static std::string GetOrEmpty(const Store& store, Family family, const std::string& key) {
    Result<std::optional<std::string>> value = store.Get(family, key);
    EXPECT_TRUE(value.ok()) << value.status().ToString();
    return value.ok() && value->has_value() ? **value : std::string();
  }

  static std::vector<std::string> ScanKeys(const Store& store, Family family,
                                           const std::string& prefix, size_t limit = SIZE_MAX) {
    std::vector<std::string> keys;
    Status s = store.Scan(family, prefix, [&](std::string_view key, std::string_view) {
      keys.emplace_back(key);
      return keys.size() < limit;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return keys;
  }

  fs::path root_;
  StoreConfig config_;
};

TEST_F(StoreTest, PutGetAcrossReopenForEveryFamily) {
  const std::string big_model(1 << 20, 'm');  // above the blob threshold of the models family
  {
    std::unique_ptr<Store> store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->path(), config_.path);
    Store::Batch batch;
    for (Family family : kAllFamilies) {
      batch.Put(family, std::string("key/") + FamilyName(family),
                std::string("value of ") + FamilyName(family));
    }
    batch.Put(Family::kModels, "v1", big_model);
    ASSERT_TRUE(store->Write(batch).ok());
  }
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  for (Family family : kAllFamilies) {
    EXPECT_EQ(GetOrEmpty(*store, family, std::string("key/") + FamilyName(family)),
              std::string("value of ") + FamilyName(family))
        << FamilyName(family);
  }
  EXPECT_EQ(GetOrEmpty(*store, Family::kModels, "v1"), big_model);
  // Families are separate key spaces.
  Result<std::optional<std::string>> absent = store->Get(Family::kClicks, "key/images");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  ASSERT_TRUE(store->Flush().ok());
}

TEST_F(StoreTest, ANewStoreIsReadableByItsOwnerOnly) {
  StoreConfig nested = config_;
  nested.path = (root_ / "deep" / "er" / "db").string();
  ASSERT_NE(OpenOrDie(nested), nullptr);
  EXPECT_EQ(fs::status(nested.path).permissions() & fs::perms::all, fs::perms::owner_all);
  // An existing directory keeps the permissions its owner gave it.
  StoreConfig shared = config_;
  shared.path = (root_ / "shared").string();
  fs::create_directories(shared.path);
  fs::permissions(shared.path,
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  ASSERT_NE(OpenOrDie(shared), nullptr);
  EXPECT_EQ(fs::status(shared.path).permissions() & fs::perms::all,
            fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

TEST_F(StoreTest, AStoreKeepsItsIdentityAcrossReopeningAndNoOtherHasIt) {
  std::string first;
  {
    std::unique_ptr<Store> store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    Result<std::string> identity = store->Identity();
    ASSERT_TRUE(identity.ok()) << identity.status().ToString();
    first = *identity;
  }
  EXPECT_FALSE(first.empty());
  std::unique_ptr<Store> again = OpenOrDie();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Identity().value(), first);
  StoreConfig other = config_;
  other.path = (root_ / "other").string();
  std::unique_ptr<Store> another = OpenOrDie(other);
  ASSERT_NE(another, nullptr);
  EXPECT_NE(another->Identity().value(), first);
}

TEST_F(StoreTest, AnOffsetIsUsedOnlyOnTheLogItWasStoredFor) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto set = [&](const std::string& topic, int64_t offset) {
    Store::Batch batch;
    batch.SetOffset(topic, 0, offset);
    ASSERT_TRUE(store->Write(batch).ok());
  };
  bool changed = true;
  EXPECT_FALSE(store->StartingOffset("images", 0, "cluster-A", &changed).value().has_value());
  EXPECT_FALSE(changed) << "nothing stored: from the start, and the log is recorded";
  set("images", 42);
  EXPECT_EQ(store->StartingOffset("images", 0, "cluster-A", &changed).value(), 42);
  EXPECT_FALSE(changed);
  EXPECT_EQ(store->StartingOffset("images", 0, "", &changed).value(), 42) << "unknown: unchecked";
  EXPECT_FALSE(store->StartingOffset("images", 0, "cluster-B", &changed).value().has_value());
  EXPECT_TRUE(changed) << "another log: from its start";
  EXPECT_FALSE(store->GetOffset("images", 0).value().has_value()) << "the old offset is gone";
  set("images", 7);
  EXPECT_EQ(store->StartingOffset("images", 0, "cluster-B", &changed).value(), 7);
  EXPECT_FALSE(changed);
  // An offset stored before logs were recorded is kept, and its log recorded from then on.
  set("clicks", 9);
  EXPECT_EQ(store->StartingOffset("clicks", 0, "cluster-B", &changed).value(), 9);
  EXPECT_FALSE(changed);
  EXPECT_FALSE(store->StartingOffset("clicks", 0, "cluster-C", &changed).value().has_value());
  EXPECT_TRUE(changed);
  EXPECT_EQ(store->GetOffset("images", 0).value(), 7) << "each partition has its own log";
}

TEST_F(StoreTest, LargeModelsGoToBlobFiles) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Store::Batch batch;
  batch.Put(Family::kModels, "v1", std::string(1 << 20, 'm'));
  ASSERT_TRUE(store->Write(batch).ok());
  ASSERT_TRUE(store->Flush().ok());  // blob files are written when the memtable is flushed
  int blob_files = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(config_.path)) {
    if (entry.path().extension() == ".blob") ++blob_files;
  }
  EXPECT_EQ(blob_files, 1);
  EXPECT_EQ(GetOrEmpty(*store, Family::kModels, "v1"), std::string(1 << 20, 'm'));
}

TEST_F(StoreTest, FamilyNamesAreTheColumnFamilyNames) {
  std::vector<std::string> names;
  for (Family family : kAllFamilies) names.emplace_back(FamilyName(family));
  EXPECT_EQ(names, (std::vector<std::string>{"images", "clicks", "labels", "pseudo_labels", "masks",
                                             "models", "offsets", "metadata", "metrics"}));
}

TEST_F(StoreTest, BatchIsAtomic) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  {
    Store::Batch unwritten;
    unwritten.Put(Family::kClicks, "ds/img1/c0", "lost");
    unwritten.SetOffset("clicks", 0, 99);
    EXPECT_FALSE(unwritten.empty());
  }  // destroyed without Write: nothing may land

  Store::Batch batch;
  EXPECT_TRUE(batch.empty());
  batch.Put(Family::kClicks, "ds/img1/c1", "click1");
  batch.Put(Family::kMetadata, "ds/img1/revision", "1");
  batch.Delete(Family::kMasks, "ds/img1");
  batch.SetOffset("clicks", 0, 42);
  Store::Batch moved = std::move(batch);
  ASSERT_TRUE(store->Write(moved).ok());

  EXPECT_EQ(GetOrEmpty(*store, Family::kClicks, "ds/img1/c1"), "click1");
  EXPECT_EQ(GetOrEmpty(*store, Family::kMetadata, "ds/img1/revision"), "1");
  Result<std::optional<int64_t>> offset = store->GetOffset("clicks", 0);
  ASSERT_TRUE(offset.ok());
  EXPECT_EQ(*offset, std::optional<int64_t>(42));
  Result<std::optional<std::string>> lost = store->Get(Family::kClicks, "ds/img1/c0");
  ASSERT_TRUE(lost.ok());
  EXPECT_FALSE(lost->has_value());
  Result<uint64_t> clicks = store->Count(Family::kClicks);
  ASSERT_TRUE(clicks.ok());
  EXPECT_EQ(*clicks, 1u);

  // A Delete in a later batch removes the record.
  Store::Batch removal;
  removal.Delete(Family::kClicks, "ds/img1/c1");
  ASSERT_TRUE(store->Write(removal).ok());
  Result<std::optional<std::string>> removed = store->Get(Family::kClicks, "ds/img1/c1");
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(removed->has_value());

  Store::Batch empty;
  EXPECT_TRUE(store->Write(empty).ok());
}

TEST_F(StoreTest, OffsetsRoundTrip) {
  struct Case {
    std::string topic;
    int32_t partition;
    int64_t offset;
  };
  // Pairs whose naive "topic/partition" spellings would collide: ("a/1", 2) vs ("a", 12)...
  const std::vector<Case> cases = {
      {"a", 12, 1},
      {"a/1", 2, 2},
      {"a/", 12, 3},
      {"a", 1, 4},
      {"a1", 2, 5},
      {"clicks", 0, 6},
      {"clicks", 2147483647, 7},
      {"images/0000000001", 1, 8},
      {"images", 1, 1LL << 40},
      {"", 0, 10},
      {"neg", -1, 11},
      {"clicks.dlq", 3, 0},
  };
  {
    std::unique_ptr<Store> store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    Store::Batch batch;
    for (const Case& c : cases) batch.SetOffset(c.topic, c.partition, c.offset);
    ASSERT_TRUE(store->Write(batch).ok());
    Result<uint64_t> count = store->Count(Family::kOffsets);
    ASSERT_TRUE(count.ok());
    EXPECT_EQ(*count, cases.size());  // no two cases shared a key
  }
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  for (const Case& c : cases) {
    Result<std::optional<int64_t>> offset = store->GetOffset(c.topic, c.partition);
    ASSERT_TRUE(offset.ok()) << offset.status().ToString();
    EXPECT_EQ(*offset, std::optional<int64_t>(c.offset)) << c.topic << " " << c.partition;
  }
  for (const auto& [topic, partition] : std::vector<std::pair<std::string, int32_t>>{
           {"a", 2}, {"a/1", 12}, {"missing", 0}, {"clicks", 1}}) {
    Result<std::optional<int64_t>> offset = store->GetOffset(topic, partition);
    ASSERT_TRUE(offset.ok());
    EXPECT_FALSE(offset->has_value()) << topic << " " << partition;
  }
}

TEST_F(StoreTest, GarbledOffsetIsDataLoss) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Store::Batch batch;
  batch.SetOffset("clicks", 0, 5);
  ASSERT_TRUE(store->Write(batch).ok());
  // Overwrite the value through the raw family with the key SetOffset uses.
  std::string key;
  ASSERT_TRUE(store
                  ->Scan(Family::kOffsets, "clicks/",
                         [&key](std::string_view k, std::string_view) {
                           key = std::string(k);
                           return false;
                         })
                  .ok());
  ASSERT_FALSE(key.empty());
  Store::Batch garble;
  garble.Put(Family::kOffsets, key, "12abc");
  ASSERT_TRUE(store->Write(garble).ok());
  Result<std::optional<int64_t>> offset = store->GetOffset("clicks", 0);
  ASSERT_FALSE(offset.ok());
  EXPECT_EQ(offset.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(offset.status().message(), "12abc")) << offset.status().ToString();
}

TEST_F(StoreTest, ScanVisitsPrefixInOrderAndStops) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Store::Batch batch;
  for (const char* key : {"ds/img1/c3", "ds/img10/c1", "ds/img1/c1", "ds/img2/c1", "ds/img1",
                          "ds/img1/c2", "dt/img1/c1"}) {
    batch.Put(Family::kClicks, key, std::string("v:") + key);
  }
  // Keys around a prefix that ends in 0xff, where the scan's upper bound has to carry.
  batch.Put(Family::kClicks, std::string("p\xff", 2), "1");
  batch.Put(Family::kClicks, std::string("p\xff\x01", 3), "2");
  batch.Put(Family::kClicks, std::string("p\xff\xff", 3), "3");
  batch.Put(Family::kClicks, "q", "4");
  ASSERT_TRUE(store->Write(batch).ok());

  EXPECT_EQ(ScanKeys(*store, Family::kClicks, "ds/img1/"),
            (std::vector<std::string>{"ds/img1/c1", "ds/img1/c2", "ds/img1/c3"}));
  EXPECT_EQ(ScanKeys(*store, Family::kClicks, "ds/img1/", 2),
            (std::vector<std::string>{"ds/img1/c1", "ds/img1/c2"}));
  EXPECT_EQ(ScanKeys(*store, Family::kClicks, "ds/"),
            (std::vector<std::string>{"ds/img1", "ds/img1/c1", "ds/img1/c2", "ds/img1/c3",
                                      "ds/img10/c1", "ds/img2/c1"}));
  EXPECT_EQ(ScanKeys(*store, Family::kClicks, std::string("p\xff", 2)).size(), 3u);
  EXPECT_EQ(ScanKeys(*store, Family::kClicks, std::string("p\xff\xff", 3)).size(), 1u);
  EXPECT_TRUE(ScanKeys(*store, Family::kClicks, "ds/img3/").empty());
  EXPECT_TRUE(ScanKeys(*store, Family::kLabels, "ds/").empty());

  std::vector<std::string> values;
  ASSERT_TRUE(store
                  ->Scan(Family::kClicks, "ds/img10/",
                         [&values](std::string_view, std::string_view value) {
                           values.emplace_back(value);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(values, (std::vector<std::string>{"v:ds/img10/c1"}));
}

TEST_F(StoreTest, CountMatchesScan) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Store::Batch batch;
  for (int image = 0; image < 12; ++image) {
    for (int click = 0; click <= image % 4; ++click) {
      batch.Put(Family::kClicks, "ds/img" + std::to_string(image) + "/c" + std::to_string(click),
                "x");
    }
  }
  ASSERT_TRUE(store->Write(batch).ok());
  ASSERT_TRUE(store->Flush().ok());  // count across a table file and the memtable
  Store::Batch more;
  more.Put(Family::kClicks, "ds/img1/c9", "x");
  more.Delete(Family::kClicks, "ds/img2/c0");
  ASSERT_TRUE(store->Write(more).ok());
  for (const std::string prefix : {"", "ds/", "ds/img1/", "ds/img2/", "ds/img11/", "none/"}) {
    Result<uint64_t> count = store->Count(Family::kClicks, prefix);
    ASSERT_TRUE(count.ok()) << count.status().ToString();
    EXPECT_EQ(*count, ScanKeys(*store, Family::kClicks, prefix).size()) << prefix;
  }
  Result<uint64_t> img1 = store->Count(Family::kClicks, "ds/img1/");
  ASSERT_TRUE(img1.ok());
  EXPECT_EQ(*img1, 3u);
}

TEST_F(StoreTest, SecondOpenOfSamePathFailsWithClearMessage) {
  std::unique_ptr<Store> first = OpenOrDie();
  ASSERT_NE(first, nullptr);
  Result<std::unique_ptr<Store>> second = Store::Open(config_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status().ToString();
  EXPECT_TRUE(Contains(second.status().message(), config_.path)) << second.status().ToString();
  EXPECT_TRUE(Contains(second.status().message(), "another clickdiffd"))
      << second.status().ToString();
  // The first handle is unaffected, and the path opens again once it is closed.
  Store::Batch batch;
  batch.Put(Family::kMetadata, "k", "v");
  EXPECT_TRUE(first->Write(batch).ok());
  first.reset();
  EXPECT_NE(OpenOrDie(), nullptr);
}

TEST_F(StoreTest, LockHeldByAnotherProcessFailsWithClearMessage) {
  OpenOrDie().reset();  // create the database, then close it
  // A child process takes the same fcntl lock on LOCK that RocksDB takes; it runs no RocksDB code,
  // so forking from this multi-threaded test is safe.
  int ready[2];
  int release[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(release), 0);
  const std::string lock_path = config_.path + "/LOCK";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int fd = open(lock_path.c_str(), O_RDWR);
    struct flock lock = {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    const char ok = (fd >= 0 && fcntl(fd, F_SETLK, &lock) == 0) ? '1' : '0';
    (void)!write(ready[1], &ok, 1);
    char done;
    (void)!read(release[0], &done, 1);
    _exit(0);
  }
  char ok = '0';
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  Result<std::unique_ptr<Store>> store(Internal("not opened"));
  if (ok == '1') store = Store::Open(config_);
  (void)!write(release[1], "x", 1);
  int wstatus = 0;
  waitpid(child, &wstatus, 0);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) close(fd);
  ASSERT_EQ(ok, '1') << "the child could not lock " << lock_path;

  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), config_.path)) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), "another clickdiffd"))
      << store.status().ToString();
}

// Overwrites `file` with bytes that are neither a valid CURRENT nor a valid MANIFEST.
void Garble(const fs::path& file) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << "this is not a rocksdb file \x01\x02\x03\xff";
}

TEST_F(StoreTest, CorruptCurrentFileFailsWithDataLoss) {
  OpenOrDie().reset();
  Garble(fs::path(config_.path) / "CURRENT");
  Result<std::unique_ptr<Store>> store = Store::Open(config_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), config_.path)) << store.status().ToString();
}

TEST_F(StoreTest, CorruptManifestFailsWithDataLoss) {
  {
    std::unique_ptr<Store> store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    Store::Batch batch;
    batch.Put(Family::kImages, "ds/img1", "pixels");
    ASSERT_TRUE(store->Write(batch).ok());
    ASSERT_TRUE(store->Flush().ok());
  }
  int garbled = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(config_.path)) {
    if (entry.path().filename().string().rfind("MANIFEST-", 0) == 0) {
      Garble(entry.path());
      ++garbled;
    }
  }
  ASSERT_GT(garbled, 0);
  Result<std::unique_ptr<Store>> store = Store::Open(config_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), config_.path)) << store.status().ToString();
}

TEST_F(StoreTest, UnknownCompressionIsInvalidArgumentNamingTheField) {
  config_.compression = "snappy";
  Result<std::unique_ptr<Store>> store = Store::Open(config_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(store.status().message(), "store.compression")) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), "snappy")) << store.status().ToString();
  EXPECT_FALSE(fs::exists(config_.path)) << "nothing is created for a rejected config";
}

TEST_F(StoreTest, EveryConfiguredCompressionOpens) {
  // Debian's RocksDB is built with LZ4 and zstd; a build without one fails Open clearly instead.
  for (const char* compression : {"lz4", "zstd", "none"}) {
    StoreConfig config = config_;
    config.compression = compression;
    config.path += std::string("_") + compression;
    config.block_cache_mb = 0;  // also covers running without a block cache
    {
      std::unique_ptr<Store> store = OpenOrDie(config);
      ASSERT_NE(store, nullptr) << compression;
      Store::Batch batch;
      batch.Put(Family::kMasks, "ds/img1", std::string(4096, 'z'));
      ASSERT_TRUE(store->Write(batch).ok());
      ASSERT_TRUE(store->Flush().ok());
    }
    std::unique_ptr<Store> store = OpenOrDie(config);
    ASSERT_NE(store, nullptr) << compression;
    EXPECT_EQ(GetOrEmpty(*store, Family::kMasks, "ds/img1"), std::string(4096, 'z'));
  }
}

TEST_F(StoreTest, InvalidConfigIsRejectedBeforeOpening) {
  StoreConfig empty_path = config_;
  empty_path.path.clear();
  Result<std::unique_ptr<Store>> store = Store::Open(empty_path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(store.status().message(), "store.path"));

  StoreConfig negative_cache = config_;
  negative_cache.block_cache_mb = -1;
  store = Store::Open(negative_cache);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(Contains(store.status().message(), "store.block_cache_mb"));
}

TEST_F(StoreTest, ConcurrentWritersAllLand) {
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kBatches = 500;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  writers.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&store, &failures, t] {
      for (int i = 0; i < kBatches; ++i) {
        Store::Batch batch;
        batch.Put(Family::kClicks, "ds/img" + std::to_string(t) + "/c" + std::to_string(i), "c");
        batch.SetOffset("clicks", t, i + 1);
        if (!store->Write(batch).ok()) ++failures;
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(failures.load(), 0);
  Result<uint64_t> total = store->Count(Family::kClicks);
  ASSERT_TRUE(total.ok());
  EXPECT_EQ(*total, static_cast<uint64_t>(kThreads * kBatches));
  for (int t = 0; t < kThreads; ++t) {
    Result<uint64_t> per_thread = store->Count(Family::kClicks, "ds/img" + std::to_string(t) + "/");
    ASSERT_TRUE(per_thread.ok());
    EXPECT_EQ(*per_thread, static_cast<uint64_t>(kBatches));
    Result<std::optional<int64_t>> offset = store->GetOffset("clicks", t);
    ASSERT_TRUE(offset.ok());
    EXPECT_EQ(*offset, std::optional<int64_t>(kBatches));
  }
}

TEST_F(StoreTest, SyncWritesSurviveReopen) {
  config_.sync = true;
  {
    std::unique_ptr<Store> store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 20; ++i) {
      Store::Batch batch;
      batch.Put(Family::kLabels, "ds/img1/l" + std::to_string(i), "label");
      batch.SetOffset("labels", 0, i + 1);
      ASSERT_TRUE(store->Write(batch).ok());
    }
  }  // closed without Flush: the records come back from the write-ahead log
  std::unique_ptr<Store> store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Result<uint64_t> count = store->Count(Family::kLabels, "ds/img1/");
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 20u);
  Result<std::optional<int64_t>> offset = store->GetOffset("labels", 0);
  ASSERT_TRUE(offset.ok());
  EXPECT_EQ(*offset, std::optional<int64_t>(20));
}

}  // namespace
}  // namespace clickdiff
