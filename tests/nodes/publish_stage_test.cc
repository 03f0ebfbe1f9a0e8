// The graph's last stage on a real store and a real ZeroMQ socket: a newer mask replaces the
// cached one and goes out; an older one is dropped; an image with ground truth is scored; a
// click's preview goes out alone; a final mask drawn with clicks tells the trainer.
#include "nodes/publish_stage.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "io/keys.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

class PublishStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = testutil::OpenFreshStore("publish", &dir_);
    zmq_ = ZmqServer::Bind(ZmqConfig{}).value();
    cache_ = std::make_unique<MaskCache>(store_.get());
    publisher_ = std::make_unique<Publisher>(zmq_.get(), nullptr, "");
    evaluator_ =
        std::make_unique<Evaluator>(store_.get(), nullptr, zmq_.get(), EvaluatorOptions{2, ""});
    stage_ =
        std::make_unique<PublishStage>(cache_.get(), publisher_.get(), evaluator_.get(),
                                       [this](const std::string& key) { stored_.push_back(key); });
  }
  void TearDown() override {
    stage_.reset();
    evaluator_.reset();
    publisher_.reset();
    zmq_.reset();
    cache_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  static v1::MaskResult Mask(const std::string& image, uint64_t version, uint64_t revision) {
    v1::MaskResult mask;
    mask.set_dataset("ds");
    mask.set_image_id(image);
    mask.set_width(2);
    mask.set_height(1);
    mask.set_mask(std::string{1, 0});
    mask.set_model_version(version);
    mask.set_click_revision(revision);
    return mask;
  }
  // Ground truth for evaluation of the 2x1 image `image`.
  void StoreTruth(const std::string& image) {
    v1::LabelEvent truth;
    truth.set_dataset("ds");
    truth.set_image_id(image);
    truth.set_label_id("truth");
    truth.set_for_evaluation(true);
    truth.mutable_dense()->set_width(2);
    truth.mutable_dense()->set_height(1);
    truth.mutable_dense()->set_class_ids(std::string{1, 0});
    Store::Batch batch;
    batch.Put(Family::kLabels, keys::Child(keys::Image("ds", image), "truth"),
              truth.SerializeAsString());
    ASSERT_TRUE(store_->Write(batch).ok());
  }
  uint64_t CachedVersion(const std::string& image) {
    return cache_->Current("ds", image).value().value().model_version();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ZmqServer> zmq_;
  std::unique_ptr<MaskCache> cache_;
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<PublishStage> stage_;
  std::vector<std::string> stored_;  // what on_stored was told
};

TEST_F(PublishStageTest, NewerMasksReplaceTheCachedOneAndOlderOnesAreDropped) {
  PublishOutcome first = (*stage_)(Mask("a", 2, 1));
  EXPECT_TRUE(first.published);
  EXPECT_FALSE(first.evaluated);  // no ground truth
  EXPECT_EQ(CachedVersion("a"), 2u);

  // Drawn for an older version, or for the same version before the last click: dropped.
  EXPECT_FALSE((*stage_)(Mask("a", 1, 5)).published);
  EXPECT_FALSE((*stage_)(Mask("a", 2, 0)).published);
  EXPECT_EQ(CachedVersion("a"), 2u);
  // A new click revision of the same version, then a new version: both replace it.
  EXPECT_TRUE((*stage_)(Mask("a", 2, 2)).published);
  EXPECT_EQ(cache_->Current("ds", "a").value()->click_revision(), 2u);
  EXPECT_TRUE((*stage_)(Mask("a", 3, 0)).published);
  EXPECT_EQ(CachedVersion("a"), 3u);
}

TEST_F(PublishStageTest, PreviewsGoOutButAreNeitherCachedNorScoredAndNeverFollowTheirFinalMask) {
  StoreTruth("a");  // a final mask would be scored
  ASSERT_TRUE((*stage_)(Mask("a", 2, 0)).published);

  v1::MaskResult preview = Mask("a", 2, 1);
  preview.set_preview(true);
  PublishOutcome out = (*stage_)(preview);
  EXPECT_TRUE(out.published);
  EXPECT_TRUE(out.preview);
  EXPECT_FALSE(out.evaluated);
  EXPECT_EQ(cache_->Current("ds", "a").value()->click_revision(), 0u);  // still the final one

  out = (*stage_)(Mask("a", 2, 1));  // the click's final mask
  EXPECT_TRUE(out.published);
  EXPECT_FALSE(out.preview);
  EXPECT_TRUE(out.evaluated);
  EXPECT_EQ(cache_->Current("ds", "a").value()->click_revision(), 1u);
  // A preview arriving after a final mask that reflects as many clicks is dropped, whatever the
  // versions; one that reflects more goes out, even when drawn by an older version.
  EXPECT_FALSE((*stage_)(preview).published);
  v1::MaskResult newer_version = Mask("a", 3, 1);
  newer_version.set_preview(true);
  EXPECT_FALSE((*stage_)(newer_version).published);
  v1::MaskResult next_click = Mask("a", 1, 2);
  next_click.set_preview(true);
  EXPECT_TRUE((*stage_)(next_click).published);
  EXPECT_EQ(cache_->Current("ds", "a").value()->click_revision(), 1u);
}

TEST_F(PublishStageTest, MasksOfImagesWithGroundTruthAreScored) {
  StoreTruth("a");

  PublishOutcome out = (*stage_)(Mask("a", 1, 0));
  EXPECT_TRUE(out.published);
  EXPECT_TRUE(out.evaluated);
  // A mask whose size does not fit its ground truth still goes out; scoring it fails (logged).
  v1::MaskResult wrong = Mask("a", 2, 0);
  wrong.set_width(1);
  wrong.set_mask(std::string{1});
  out = (*stage_)(wrong);
  EXPECT_TRUE(out.published);
  EXPECT_FALSE(out.evaluated);
  EXPECT_EQ(CachedVersion("a"), 2u);
}

TEST_F(PublishStageTest, OnlyACachedFinalMaskDrawnWithClicksIsAnnouncedToTheTrainer) {
  ASSERT_TRUE((*stage_)(Mask("a", 1, 0)).published);  // no click: not a label
  v1::MaskResult preview = Mask("a", 1, 1);
  preview.set_preview(true);
  ASSERT_TRUE((*stage_)(preview).published);  // not cached
  EXPECT_TRUE(stored_.empty());
  ASSERT_TRUE((*stage_)(Mask("a", 1, 1)).published);
  EXPECT_EQ(stored_, std::vector<std::string>{keys::Image("ds", "a")});
  ASSERT_FALSE((*stage_)(Mask("a", 0, 1)).published);  // dropped as older: not cached
  EXPECT_EQ(stored_.size(), 1u);
}

}  // namespace
}  // namespace clickdiff
