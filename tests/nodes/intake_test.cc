#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "io/embedded_broker.h"
#include "io/keys.h"
#include "nodes/click_intake.h"
#include "nodes/decode.h"
#include "nodes/evaluator.h"
#include "nodes/image_intake.h"
#include "nodes/infer_request.h"
#include "nodes/label_intake.h"
#include "nodes/mask_cache.h"
#include "nodes/preprocess.h"
#include "nodes/priority_fifo.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

using ::testing::HasSubstr;
using testutil::Click;
using testutil::PngImageEvent;
using testutil::Record;

// Intake stages against a real RocksDB in a fresh directory.
class IntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = testutil::OpenFreshStore("intake", &dir_);
    broker_ = EmbeddedBroker::Start(1).value();
    producer_ = KafkaProducer::Create(KafkaConfig{}, broker_->bootstrap_servers()).value();
    letters_ = std::make_unique<DeadLetterSink>(producer_.get(), store_.get(), ".dlq");
    clicks_ = std::make_unique<ClickIntake>(store_.get(), letters_.get(),
                                            /*pending_timeout_ms=*/60'000);
    images_ = std::make_unique<ImageIntake>(store_.get(), clicks_.get());
  }
  void TearDown() override {
    clicks_.reset();
    images_.reset();
    letters_.reset();
    producer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  ImageRecord Image(const std::string& id) {
    Decoded d = Decode(KafkaTopics{}, DecodeLimits{})(
        Envelope{0, Record("images", PngImageEvent(id).SerializeAsString())});
    return std::get<ImageRecord>(Preprocess(16)(std::move(d)).event);
  }
  uint64_t Clicks(const std::string& image) {
    return store_->Count(Family::kClicks, keys::Under(keys::Image("ds", image))).value();
  }
  std::optional<int64_t> Offset(const std::string& topic) {
    return store_->GetOffset(topic, 0).value();
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<KafkaProducer> producer_;
  std::unique_ptr<DeadLetterSink> letters_;
  std::unique_ptr<ClickIntake> clicks_;
  std::unique_ptr<ImageIntake> images_;
};

TEST_F(IntakeTest, ImageIsStoredOnceWithItsOffsetAndAsksForAMask) {
  IntakeOutcome first = (*images_)(Image("a"), Record("images", "", 5));
  EXPECT_FALSE(first.rejected);
  ASSERT_EQ(first.infer.size(), 1u);
  EXPECT_EQ(first.infer[0].image_id, "a");
  EXPECT_EQ(Offset("images"), 6);
  IntakeOutcome again = (*images_)(Image("a"), Record("images", "", 9));
  EXPECT_TRUE(again.duplicate);
  EXPECT_TRUE(again.infer.empty());
  EXPECT_EQ(Offset("images"), 10);  // a duplicate still moves the stream on
  EXPECT_EQ(store_->Count(Family::kImages).value(), 1u);
}

TEST_F(IntakeTest, ClickInsideItsImageIsRecordedOncePerClickId) {
  (void)(*images_)(Image("a"), Record("images", "", 0));
  IntakeOutcome first = (*clicks_)(Click("a", "c1", 3, 4), Record("clicks", "", 0));
  EXPECT_FALSE(first.rejected);
  // A preview first, above everything, then the final mask.
  ASSERT_EQ(first.infer.size(), 2u);
  EXPECT_TRUE(first.infer[0].preview);
  EXPECT_EQ(first.infer[0].priority, kPriorityPreview);
  EXPECT_FALSE(first.infer[1].preview);
  EXPECT_EQ(first.infer[1].priority, kPriorityEvent);
  EXPECT_EQ(first.infer[1].image_id, "a");
  IntakeOutcome again = (*clicks_)(Click("a", "c1", 3, 4), Record("clicks", "", 1));
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(Clicks("a"), 1u);
  EXPECT_EQ(Offset("clicks"), 2);
}

TEST_F(IntakeTest, ClickOutsideItsImageIsRefusedAndNothingIsWritten) {
  (void)(*images_)(Image("a"), Record("images", "", 0));
  IntakeOutcome outcome = (*clicks_)(Click("a", "c1", 24, 4), Record("clicks", "", 0));
  ASSERT_TRUE(outcome.rejected);
  EXPECT_THAT(*outcome.rejected, HasSubstr("outside image a of 24x16"));
  EXPECT_EQ(Clicks("a"), 0u);
  EXPECT_EQ(Offset("clicks"), std::nullopt);  // the dead-letter stage stores it
}

TEST_F(IntakeTest, ClickThatOvertookItsImageWaitsAndIsAdopted) {
  IntakeOutcome parked = (*clicks_)(Click("b", "c1", 2, 2), Record("clicks", "", 0));
  EXPECT_FALSE(parked.rejected);
  EXPECT_TRUE(parked.infer.empty());
  EXPECT_EQ(Offset("clicks"), 1);
  IntakeOutcome outside = (*clicks_)(Click("b", "c2", 99, 2), Record("clicks", "", 1));
  EXPECT_FALSE(outside.rejected);  // not known to be outside until the image arrives
  IntakeOutcome image = (*images_)(Image("b"), Record("images", "", 0));
  EXPECT_EQ(image.infer.size(), 1u);
  EXPECT_EQ(Clicks("b"), 1u);
  EXPECT_EQ(letters_->count(), 1u);  // c2, outside the image, was dead-lettered
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 120'000).value(), 0u);  // nothing left waiting
}

TEST_F(IntakeTest, ClickForAnImageThatNeverArrivesExpiresWithAReason) {
  (void)(*clicks_)(Click("ghost", "c1", 2, 2), Record("clicks", "", 0));
  EXPECT_EQ(clicks_->ExpirePending(NowMs()).value(), 0u);  // not yet
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 60'001).value(), 1u);
  EXPECT_EQ(letters_->count(), 1u);
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 120'000).value(), 0u);  // removed once sent
}

TEST_F(IntakeTest, LabelMustMatchItsImage) {
  LabelIntake labels(store_.get(), clicks_.get());
  v1::LabelEvent label;
  label.set_dataset("ds");
  label.set_image_id("a");
  label.set_label_id("truth");
  label.mutable_dense()->set_width(24);
  label.mutable_dense()->set_height(16);
  label.mutable_dense()->set_class_ids(std::string(24 * 16, '\1'));
  // Before its image: it waits, and is stored when the image arrives.
  IntakeOutcome early = labels(label, Record("labels", "", 0));
  EXPECT_FALSE(early.rejected);
  EXPECT_EQ(Offset("labels"), 1);
  EXPECT_EQ(store_->Count(Family::kLabels).value(), 0u);
  (void)(*images_)(Image("a"), Record("images", "", 0));
  EXPECT_EQ(store_->Count(Family::kLabels).value(), 1u);
  EXPECT_TRUE(labels(label, Record("labels", "", 2)).duplicate);
  label.mutable_dense()->set_width(12);
  label.mutable_dense()->set_class_ids(std::string(12 * 16, '\1'));
  label.set_label_id("other");
  EXPECT_THAT(*labels(label, Record("labels", "", 3)).rejected, HasSubstr("12x16 but image a"));
  // A label that waited and does not fit is dead-lettered when its image arrives.
  label.set_image_id("b");
  label.set_label_id("b-truth");
  EXPECT_FALSE(labels(label, Record("labels", "", 4)).rejected);
  (void)(*images_)(Image("b"), Record("images", "", 1));
  EXPECT_EQ(letters_->count(), 1u);
}

TEST_F(IntakeTest, MaskCacheHitsOnlyForTheSameVersionAndRevision) {
  MaskCache cache(store_.get());
  v1::MaskResult mask;
  mask.set_dataset("ds");
  mask.set_image_id("a");
  mask.set_model_version(3);
  mask.set_click_revision(2);
  ASSERT_TRUE(cache(mask).ok());
  EXPECT_TRUE(cache.Lookup("ds", "a", 3, 2).value().has_value());
  EXPECT_FALSE(cache.Lookup("ds", "a", 4, 2).value().has_value());
  EXPECT_FALSE(cache.Lookup("ds", "a", 3, 3).value().has_value());
  EXPECT_FALSE(cache.Current("ds", "b").value().has_value());
}

// Image a (24x16) has a mask of version 3 whose left half (x < 12) is class 1.
TEST_F(IntakeTest, FreshClicksAreTestedOnTheMaskTheirImageHadPerVersion) {
  (void)(*images_)(Image("a"), Record("images", "", 0));
  IntakeOutcome before = (*clicks_)(Click("a", "c0", 3, 4), Record("clicks", "", 0));
  EXPECT_FALSE(before.click_checks);  // no mask yet: nothing to test
  v1::MaskResult mask;
  mask.set_dataset("ds");
  mask.set_image_id("a");
  mask.set_width(24);
  mask.set_height(16);
  mask.set_model_version(3);
  std::string ids(24 * 16, '\0');
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 12; ++x) ids[y * 24 + x] = 1;
  }
  mask.set_mask(ids);
  ASSERT_TRUE(MaskCache(store_.get())(mask).ok());

  v1::ClickEvent other_class = Click("a", "c1", 5, 5, /*class_id=*/2);  // first of class 2: miss
  v1::ClickEvent again = Click("a", "c2", 4, 9);                        // class 1 again: hit
  v1::ClickEvent missed = Click("a", "c3", 20, 9);                      // class 1 again: miss
  v1::ClickEvent negative = Click("a", "c4", 20, 2);  // no class 1 at (20, 2): hit
  negative.set_positive(false);
  // A negative click says background, whatever class it names: on class 1 it is a miss.
  v1::ClickEvent background = Click("a", "c5", 3, 3, /*class_id=*/0);
  background.set_positive(false);
  for (const v1::ClickEvent& c : {other_class, again, missed, negative, background}) {
    IntakeOutcome outcome = (*clicks_)(c, Record("clicks", "", 1));
    ASSERT_FALSE(outcome.rejected);
    ASSERT_TRUE(outcome.click_checks) << c.click_id();
  }
  IntakeOutcome duplicate = (*clicks_)(again, Record("clicks", "", 2));
  EXPECT_TRUE(duplicate.duplicate);
  EXPECT_FALSE(duplicate.click_checks);  // a click is tested once

  v1::Metrics record;
  ASSERT_TRUE(record.ParseFromString(
      store_->Get(Family::kMetrics, keys::ClickChecks("ds", 3)).value().value()));
  EXPECT_EQ(record.model_version(), 3u);
  EXPECT_EQ(record.fresh_clicks().tested(), 5u);
  EXPECT_EQ(record.fresh_clicks().hits(), 2u);
  EXPECT_EQ(record.fresh_clicks().first_tested(), 1u);  // c0 came before the mask
  EXPECT_EQ(record.fresh_clicks().first_hits(), 0u);

  // The per-version metrics carry the checks, alone when no mask of the version was scored.
  std::vector<v1::Metrics> versions = Evaluator::VersionMetrics(*store_, "ds").value();
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0].images(), 0u);
  EXPECT_EQ(versions[0].fresh_clicks().hits(), 2u);
  EXPECT_TRUE(Evaluator::VersionMetrics(*store_, "other").value().empty());
}

TEST(InferRequestGateTest, FoldsRequestsForAnImageWaitingForASampler) {
  InferRequestGate gate;
  EXPECT_TRUE(gate(RequestFor("ds", "a")));
  EXPECT_FALSE(gate(RequestFor("ds", "a")));
  EXPECT_TRUE(gate(RequestFor("ds", "b")));
  gate.Started(RequestFor("ds", "a"));
  EXPECT_TRUE(gate(RequestFor("ds", "a")));
  EXPECT_EQ(gate.waiting(), 2u);
  // A more urgent request overtakes a waiting sweep request; a less urgent one is folded.
  EXPECT_TRUE(gate(RequestFor("ds", "c", 0.2)));
  EXPECT_FALSE(gate(RequestFor("ds", "c", 0.1)));
  EXPECT_TRUE(gate(RequestFor("ds", "c", kPriorityEvent)));
  EXPECT_FALSE(gate(RequestFor("ds", "c", kPriorityStale)));
  // A click's preview and its final mask are separate requests: neither folds the other, and
  // previews fold among themselves.
  EXPECT_TRUE(gate(PreviewFor("ds", "c")));
  EXPECT_FALSE(gate(PreviewFor("ds", "c")));
  EXPECT_FALSE(gate(RequestFor("ds", "c", kPriorityEvent)));  // the final one still waits
  gate.Started(PreviewFor("ds", "c"));
  EXPECT_TRUE(gate(PreviewFor("ds", "c")));
  EXPECT_FALSE(gate(RequestFor("ds", "c", kPriorityEvent)));
}

TEST(PriorityFifoTest, HighestPriorityFirstThenArrivalOrder) {
  PriorityFifo<std::string> queue;
  queue.Push(0.2, "sweep-a");
  queue.Push(0.7, "sweep-b");
  queue.Push(kPriorityEvent, "click-1");
  queue.Push(kPriorityStale, "missing");
  queue.Push(kPriorityEvent, "click-2");
  queue.Push(0.7, "sweep-c");
  EXPECT_EQ(queue.size(), 6u);
  EXPECT_EQ(queue.Pop(), "click-1");
  EXPECT_EQ(queue.Pop(), "click-2");
  EXPECT_EQ(queue.Pop(), "missing");
  EXPECT_EQ(queue.TakeAll(), (std::vector<std::string>{"sweep-b", "sweep-c", "sweep-a"}));
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.Pop(), std::nullopt);
}

}  // namespace
}  // namespace clickdiff
