// The model versions in RocksDB without any training: what Save writes, what a restart loads, and
// what it refuses.
#include "learning/version_store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "config/model_options.h"
#include "io/keys.h"
#include "model/checkpoint_store.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

class VersionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = testutil::OpenFreshStore("versions", &dir_); }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A tiny model's checkpoint, different for each seed.
  static std::string Checkpoint(uint64_t seed) {
    model::SegmenterOptions options = SegmenterOptionsFrom(testutil::TinyModelConfig()).value();
    options.seed = seed;
    return model::CheckpointStore::ToBytes(model::Segmenter::Create(options, torch::kCPU).value())
        .value();
  }
  static VersionRecord Record(uint64_t version, uint64_t steps, std::optional<std::string> twin) {
    VersionRecord r;
    r.update.set_model_version(version);
    r.update.set_train_steps(steps);
    r.checkpoint = Checkpoint(version);
    r.twin = std::move(twin);
    return r;
  }
  bool HasVersion(uint64_t v) {
    return store_->Get(Family::kModels, VersionStore::ModelKey(v)).value().has_value();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(VersionStoreTest, AnEmptyStoreHasNothingToResume) {
  Result<StoredVersions> latest = VersionStore(store_.get(), "tiny", 3).LoadLatest(torch::kCPU);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_FALSE(latest->model.has_value());
  EXPECT_EQ(latest->newest, 0u);
  EXPECT_EQ(latest->steps, 0);
}

TEST_F(VersionStoreTest, RestartLoadsTheNewestVersionOfItsLineageAndPrunesOldOnes) {
  VersionStore versions(store_.get(), "tiny", 2);
  for (uint64_t v = 1; v <= 4; ++v) ASSERT_TRUE(versions.Save(Record(v, 10 * v, {})).ok());
  EXPECT_FALSE(HasVersion(1));
  EXPECT_FALSE(HasVersion(2));
  EXPECT_TRUE(HasVersion(3));
  EXPECT_TRUE(HasVersion(4));

  Result<StoredVersions> latest = versions.LoadLatest(torch::kCPU);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  ASSERT_TRUE(latest->model.has_value());
  EXPECT_EQ(latest->model->version, 4u);
  EXPECT_EQ(latest->newest, 4u);
  EXPECT_EQ(latest->steps, 40);
  EXPECT_EQ(model::CheckpointStore::ToBytes(*latest->model->segmenter).value(), Checkpoint(4));

  // A smaller keep_versions later, and a gap in the numbers: every older version goes.
  VersionStore kept_more(store_.get(), "tiny", 5);
  ASSERT_TRUE(kept_more.Save(Record(5, 50, std::string("twin"))).ok());
  ASSERT_TRUE(kept_more.Save(Record(6, 60, std::string("twin"))).ok());
  EXPECT_TRUE(HasVersion(3));
  VersionStore keep_one(store_.get(), "tiny", 1);
  ASSERT_TRUE(keep_one.Save(Record(9, 90, std::string("twin"))).ok());
  for (uint64_t v = 1; v <= 8; ++v) EXPECT_FALSE(HasVersion(v)) << v;
  EXPECT_TRUE(HasVersion(9));
  EXPECT_TRUE(store_->Get(Family::kModels, VersionStore::kTwinKey).value().has_value())
      << "the twin is no version";
  latest = versions.LoadLatest(torch::kCPU);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(latest->model->version, 9u);

  // Another lineage learns the newest number but not the model.
  Result<StoredVersions> other = VersionStore(store_.get(), "other", 2).LoadLatest(torch::kCPU);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->model.has_value());
  EXPECT_EQ(other->newest, 9u);
}

TEST_F(VersionStoreTest, ModelUpdatesAreKeptForTheLearningCurveAndAtLeastWithTheirModel) {
  auto has_update = [&](uint64_t v) {
    return store_->Get(Family::kMetadata, keys::ModelUpdate(v)).value().has_value();
  };
  VersionStore versions(store_.get(), "tiny", 2, 4);
  for (uint64_t v = 1; v <= 6; ++v) ASSERT_TRUE(versions.Save(Record(v, 10 * v, {})).ok());
  for (uint64_t v = 1; v <= 6; ++v) EXPECT_EQ(HasVersion(v), v >= 5) << v;
  for (uint64_t v = 1; v <= 6; ++v) EXPECT_EQ(has_update(v), v >= 3) << v;
  // Fewer curve versions than models: a kept model keeps its record.
  VersionStore short_curve(store_.get(), "tiny", 3, 1);
  ASSERT_TRUE(short_curve.Save(Record(7, 70, {})).ok());
  for (uint64_t v = 1; v <= 7; ++v) EXPECT_EQ(has_update(v), v >= 5) << v;
  // 0: every record kept (whatever the models).
  VersionStore all(store_.get(), "tiny", 1, 0);
  ASSERT_TRUE(all.Save(Record(8, 80, {})).ok());
  for (uint64_t v = 5; v <= 8; ++v) EXPECT_TRUE(has_update(v)) << v;
  EXPECT_FALSE(HasVersion(7));
}

TEST_F(VersionStoreTest, TheTwinBelongsToTheVersionItWasSavedWith) {
  VersionStore versions(store_.get(), "tiny", 0);
  ASSERT_TRUE(versions.Save(Record(1, 5, Checkpoint(77))).ok());
  Result<std::optional<model::Segmenter>> twin = versions.LoadTwin(1, torch::kCPU);
  ASSERT_TRUE(twin.ok()) << twin.status().ToString();
  ASSERT_TRUE(twin->has_value());
  EXPECT_EQ(model::CheckpointStore::ToBytes(**twin).value(), Checkpoint(77));
  EXPECT_FALSE(versions.LoadTwin(2, torch::kCPU).value().has_value());

  // A version saved without a twin deletes the earlier one: it would be stale.
  ASSERT_TRUE(versions.Save(Record(2, 6, {})).ok());
  EXPECT_FALSE(versions.LoadTwin(1, torch::kCPU).value().has_value());
  EXPECT_FALSE(store_->Get(Family::kModels, VersionStore::kTwinKey).value().has_value());
}

TEST_F(VersionStoreTest, ACorruptCurrentVersionIsDataLossNamingIt) {
  VersionStore versions(store_.get(), "tiny", 0);
  Store::Batch batch;
  batch.Put(Family::kMetadata, VersionStore::kCurrentVersionKey, "seven");
  ASSERT_TRUE(store_->Write(batch).ok());
  Result<StoredVersions> latest = versions.LoadLatest(torch::kCPU);
  EXPECT_EQ(latest.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(latest.status().message().find("'seven'"), std::string::npos);

  // A current version whose checkpoint is gone, and nothing older.
  ASSERT_TRUE(versions.Save(Record(3, 1, {})).ok());
  Store::Batch drop;
  drop.Delete(Family::kModels, VersionStore::ModelKey(3));
  ASSERT_TRUE(store_->Write(drop).ok());
  latest = versions.LoadLatest(torch::kCPU);
  EXPECT_EQ(latest.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(latest.status().message().find("version 3"), std::string::npos);
}

TEST_F(VersionStoreTest, AnUnreadableNewestVersionFallsBackToTheNewestReadableOne) {
  VersionStore versions(store_.get(), "tiny", 0);
  for (uint64_t v = 1; v <= 4; ++v) ASSERT_TRUE(versions.Save(Record(v, 10 * v, {})).ok());
  Store::Batch garbage;  // 4 overwritten with garbage, 3 gone
  garbage.Put(Family::kModels, VersionStore::ModelKey(4), "not a checkpoint");
  garbage.Delete(Family::kModels, VersionStore::ModelKey(3));
  ASSERT_TRUE(store_->Write(garbage).ok());
  Result<StoredVersions> latest = versions.LoadLatest(torch::kCPU);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  ASSERT_TRUE(latest->model.has_value());
  EXPECT_EQ(latest->model->version, 2u);
  EXPECT_EQ(latest->steps, 20);
  EXPECT_EQ(latest->newest, 4u) << "new versions are numbered above the unreadable ones";
}

}  // namespace
}  // namespace clickdiff
