// Which masks a new model version (or a restart) redraws, and in which order, on a real store.
#include "nodes/stale_masks.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "io/keys.h"
#include "nodes/intake.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

class StaleMasksTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = testutil::OpenFreshStore("stale", &dir_); }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Put(Family family, const std::string& key, const std::string& value) {
    Store::Batch batch;
    batch.Put(family, key, value);
    ASSERT_TRUE(store_->Write(batch).ok());
  }
  // `id` with `clicks` clicks, the i-th sent at Unix ms `first_click_ms + i`.
  void StoreImage(const std::string& id, int clicks, int64_t first_click_ms = 0) {
    Put(Family::kImages, keys::Image("ds", id),
        testutil::StoredImageOnGrid(id, 4, [](int, int) { return 0.5f; }).SerializeAsString());
    for (int i = 0; i < clicks; ++i) {
      const std::string click = "c" + std::to_string(i);
      v1::ClickEvent event = testutil::Click(id, click, 1, 1);
      event.set_timestamp_ms(first_click_ms + i);
      Put(Family::kClicks, keys::Child(keys::Image("ds", id), click), event.SerializeAsString());
    }
  }
  // A cached mask of `id` drawn at `version` after `revision` clicks, every pixel `uncertainty`.
  void StoreMask(const std::string& id, uint64_t version, uint64_t revision,
                 unsigned char uncertainty) {
    v1::MaskResult mask;
    mask.set_dataset("ds");
    mask.set_image_id(id);
    mask.set_model_version(version);
    mask.set_click_revision(revision);
    mask.set_uncertainty(std::string(8, static_cast<char>(uncertainty)));
    ASSERT_TRUE(MaskCache(store_.get())(mask).ok());
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StaleMasksTest, MissingAndClickStaleFirstThenClickedByRecencyThenByUncertainty) {
  StoreImage("missing", 0);
  StoreImage("clicked_since", 2);
  StoreMask("clicked_since", 7, 1, 0);  // drawn before its second click
  StoreImage("old_sure", 0);
  StoreMask("old_sure", 6, 0, 51);  // another version, 20% uncertain
  StoreImage("old_unsure", 0);
  StoreMask("old_unsure", 6, 0, 204);  // another version, 80% uncertain
  StoreImage("current", 1);
  StoreMask("current", 7, 1, 255);
  // Clicked images of another version: the one clicked last first, ahead of every unclicked one
  // however uncertain.
  constexpr int64_t kNow = 1'796'000'000'000;  // Unix ms, late 2026
  StoreImage("clicked_earlier", 3, kNow - 60'000);
  StoreMask("clicked_earlier", 6, 3, 0);
  StoreImage("clicked_latest", 1, kNow);
  StoreMask("clicked_latest", 6, 1, 0);

  MaskCache cache(store_.get());
  Result<std::vector<InferRequest>> stale = StaleMasks(store_.get(), &cache)(7);
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  std::map<std::string, double> priority;
  for (const InferRequest& r : *stale) {
    EXPECT_EQ(r.dataset, "ds");
    priority[r.image_id] = r.priority;
  }
  EXPECT_EQ(priority.size(), 6u);
  EXPECT_EQ(priority.count("current"), 0u);
  EXPECT_EQ(priority["missing"], kPriorityStale);
  EXPECT_EQ(priority["clicked_since"], kPriorityStale);
  EXPECT_NEAR(priority["old_sure"], 0.2, 1e-9);
  EXPECT_NEAR(priority["old_unsure"], 0.8, 1e-9);
  EXPECT_LT(priority["clicked_latest"], kPriorityStale);
  EXPECT_GT(priority["clicked_latest"], priority["clicked_earlier"]);
  EXPECT_GT(priority["clicked_earlier"], priority["old_unsure"]);

  // For version 6 its masks are current; the others are asked for, in store order.
  stale = StaleMasks(store_.get(), &cache)(6);
  ASSERT_TRUE(stale.ok());
  std::vector<std::string> ids;
  for (const InferRequest& r : *stale) ids.push_back(r.image_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"clicked_since", "current", "missing"}));
}

}  // namespace
}  // namespace clickdiff
