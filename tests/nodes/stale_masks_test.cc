// Which masks a new model version (or a restart) redraws, and in which order, on a real store.
#include "nodes/stale_masks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
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
  const StaleMasks sweep(store_.get(), &cache);
  Result<SweepPage> stale = sweep.Page(7, std::nullopt, 100);
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  EXPECT_FALSE(stale->next.has_value());
  std::map<std::string, double> priority;
  for (const InferRequest& r : stale->requests) {
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

  // For version 6 its masks are current; the others are asked for in sweep order (priority,
  // then key).
  stale = sweep.Page(6, std::nullopt, 100);
  ASSERT_TRUE(stale.ok());
  std::vector<std::string> ids;
  for (const InferRequest& r : stale->requests) ids.push_back(r.image_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"clicked_since", "missing", "current"}));
}

TEST_F(StaleMasksTest, ASweepReadInPagesAsksForEachImageOnceInSweepOrder) {
  // 3 images without a mask, 7 with one of version 6, the more uncertain the higher their number;
  // one of version 7 (current).
  for (int i = 0; i < 3; ++i) StoreImage("new" + std::to_string(i), 0);
  for (int i = 0; i < 7; ++i) {
    const std::string id = "old" + std::to_string(i);
    StoreImage(id, 0);
    StoreMask(id, 6, 0, static_cast<unsigned char>(30 * i));
  }
  StoreImage("current", 0);
  StoreMask("current", 7, 0, 255);
  MaskCache cache(store_.get());
  const StaleMasks sweep(store_.get(), &cache);
  auto read_pages = [&](size_t limit, const std::function<void(int)>& between) {
    std::vector<std::string> ids;
    std::optional<SweepCursor> after;
    int pages = 0;
    do {
      Result<SweepPage> page = sweep.Page(7, after, limit);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) break;
      EXPECT_LE(page->requests.size(), limit);
      for (const InferRequest& r : page->requests) ids.push_back(r.image_id);
      after = page->next;
      between(++pages);
    } while (after.has_value());
    return std::make_pair(ids, pages);
  };
  const std::vector<std::string> order{"new0", "new1", "new2", "old6", "old5",
                                       "old4", "old3", "old2", "old1", "old0"};
  auto [whole, one] = read_pages(100, [](int) {});
  EXPECT_EQ(whole, order);
  EXPECT_EQ(one, 1);
  auto [paged, pages] = read_pages(3, [](int) {});
  EXPECT_EQ(paged, order);
  EXPECT_EQ(pages, 4);  // 3 + 3 + 3 + 1: no empty page at the end
  auto [exact, exact_pages] = read_pages(5, [](int) {});
  EXPECT_EQ(exact, order);
  EXPECT_EQ(exact_pages, 2);

  // A mask drawn while the sweep goes on is current: a later page leaves it out.
  auto [drawn, drawn_pages] = read_pages(3, [&](int page) {
    if (page == 1) StoreMask("old1", 7, 0, 0);
  });
  std::vector<std::string> without = order;
  without.erase(std::find(without.begin(), without.end(), "old1"));
  EXPECT_EQ(drawn, without);
  EXPECT_EQ(drawn_pages, 3);
}

}  // namespace
}  // namespace clickdiff
