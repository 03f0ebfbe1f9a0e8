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
#include "nodes/intake_stage.h"
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
    outbox_ = Outbox::Open(store_.get(), producer_.get(), "intake").value();
    letters_ = std::make_unique<DeadLetterSink>(outbox_.get(), store_.get(), ".dlq");
    clicks_ = std::make_unique<ClickIntake>(store_.get(), letters_.get(),
                                            /*pending_timeout_ms=*/60'000);
    images_ = std::make_unique<ImageIntake>(store_.get(), clicks_.get());
  }
  void TearDown() override {
    clicks_.reset();
    images_.reset();
    letters_.reset();
    outbox_.reset();
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
  std::unique_ptr<Outbox> outbox_;
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

TEST_F(IntakeTest, OutOfMemoryHaltsIntakeInsteadOfDeadLetteringTheEvent) {
  // Running out of memory is not the event's fault: it is not dead-lettered and its offset is not
  // stored, so a restart reads it again; nothing after it is applied.
  IntakeStage stage(store_.get(), producer_.get(), outbox_.get(), KafkaTopics{}, LimitsConfig{},
                    StoredCounts{}, nullptr);
  Decoded starved;
  starved.source = Record("images", PngImageEvent("a").SerializeAsString(), 3);
  starved.failure = ResourceExhausted("out of memory decoding images@3");
  EXPECT_TRUE(stage(starved).empty());
  EXPECT_EQ(stage.failure().code(), StatusCode::kResourceExhausted) << stage.failure().ToString();
  Decoded next;
  next.source = Record("images", "", 4);
  next.event = Image("b");
  EXPECT_TRUE(stage(next).empty());
  EXPECT_EQ(stage.counters().dead_letters, 0u);
  EXPECT_EQ(stage.counters().applied, 0u);
  EXPECT_FALSE(Offset("images").has_value());
  EXPECT_EQ(store_->Count(Family::kImages).value(), 0u);
}

TEST_F(IntakeTest, ACorruptStoredImageRefusesItsClicksUntilItIsSentAgain) {
  // Halting on it would only halt again after every restart.
  Store::Batch garbage;
  garbage.Put(Family::kImages, keys::Image("ds", "a"), "not a stored image");
  ASSERT_TRUE(store_->Write(garbage).ok());
  IntakeOutcome refused = (*clicks_)(Click("a", "c1", 2, 2), Record("clicks", "", 0));
  EXPECT_TRUE(refused.failure.ok()) << refused.failure.ToString();
  ASSERT_TRUE(refused.rejected.has_value());
  EXPECT_THAT(*refused.rejected, HasSubstr("the stored record of image ds/a is corrupt"));
  // The image sent again replaces the corrupt record (not a duplicate), and is not counted twice.
  IntakeOutcome repaired = (*images_)(Image("a"), Record("images", "", 0));
  EXPECT_FALSE(repaired.duplicate);
  EXPECT_EQ(repaired.added.images, 0u);
  EXPECT_EQ(repaired.infer.size(), 1u);
  IntakeOutcome accepted = (*clicks_)(Click("a", "c1", 2, 2), Record("clicks", "", 1));
  EXPECT_FALSE(accepted.rejected);
  EXPECT_EQ(Clicks("a"), 1u);
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
  v1::ClickEvent early = Click("b", "c1", 2, 2);
  early.set_correction_gap(7);  // a producer's value: replaced when the click is adopted
  IntakeOutcome parked = (*clicks_)(early, Record("clicks", "", 0));
  EXPECT_FALSE(parked.rejected);
  EXPECT_TRUE(parked.infer.empty());
  EXPECT_EQ(Offset("clicks"), 1);
  IntakeOutcome outside = (*clicks_)(Click("b", "c2", 99, 2), Record("clicks", "", 1));
  EXPECT_FALSE(outside.rejected);  // not known to be outside until the image arrives
  IntakeOutcome image = (*images_)(Image("b"), Record("images", "", 0));
  EXPECT_EQ(image.infer.size(), 1u);
  EXPECT_EQ(Clicks("b"), 1u);
  v1::ClickEvent adopted;
  ASSERT_TRUE(adopted.ParseFromString(
      store_->Get(Family::kClicks, keys::Child(keys::Image("ds", "b"), "c1")).value().value()));
  EXPECT_EQ(adopted.correction_gap(), 0);
  EXPECT_EQ(letters_->count(), 1u);  // c2, outside the image, was dead-lettered
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 120'000).value(), 0u);  // nothing left waiting
}

TEST_F(IntakeTest, ClickForAnImageThatNeverArrivesExpiresWithAReason) {
  (void)(*clicks_)(Click("ghost", "c1", 2, 2), Record("clicks", "", 0));
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 60'001).value(), 0u) << "images may still come";
  clicks_->ImagesAtEnd(NowMs());                           // every image there was has been read
  EXPECT_EQ(clicks_->ExpirePending(NowMs()).value(), 0u);  // not yet
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 60'001).value(), 1u);
  EXPECT_EQ(letters_->count(), 1u);
  EXPECT_EQ(clicks_->ExpirePending(NowMs() + 120'000).value(), 0u);  // removed once sent
}

TEST_F(IntakeTest, InABacklogAClickWaitsAsLongAsOlderImagesAreStillRead) {
  // The click's record is from t = 1000 s; its image never comes (timeout 60 s).
  KafkaMessage source = Record("clicks", "", 0);
  source.timestamp_ms = 1'000'000;
  (void)(*clicks_)(Click("ghost", "c1", 2, 2), source);
  // Hours of backlog: images keep being read, all older than the click: it keeps waiting.
  const int64_t now = NowMs();
  for (int64_t hour = 1; hour <= 5; ++hour) {
    clicks_->ImageRecordRead(0, 900'000);
    EXPECT_EQ(clicks_->ExpirePending(now + hour * 3'600'000).value(), 0u) << hour;
  }
  // Images from later than the click, but within its timeout: still waiting.
  clicks_->ImageRecordRead(0, 1'059'999);
  EXPECT_EQ(clicks_->ExpirePending(now + 6 * 3'600'000).value(), 0u);
  // The images topic read a full timeout past the click, and no such image: it expires once every
  // images partition is (a second one still behind holds it back).
  clicks_->ImageRecordRead(1, 950'000);
  clicks_->ImageRecordRead(0, 1'060'000);
  EXPECT_EQ(clicks_->ExpirePending(now + 6 * 3'600'000).value(), 0u);
  clicks_->ImageRecordRead(1, 1'070'000);
  EXPECT_EQ(clicks_->ExpirePending(now + 6 * 3'600'000).value(), 1u);
  EXPECT_EQ(letters_->count(), 1u);

  // Once the images topic is at its end, the wall clock decides, counted from then.
  KafkaMessage late = Record("clicks", "", 1);
  late.timestamp_ms = 5'000'000;
  (void)(*clicks_)(Click("ghost2", "c2", 2, 2), late);
  EXPECT_EQ(clicks_->ExpirePending(now + 7 * 3'600'000).value(), 0u) << "not at its end: waits";
  clicks_->ImagesAtEnd(now + 7 * 3'600'000);
  EXPECT_EQ(clicks_->ExpirePending(now + 7 * 3'600'000 + 59'999).value(), 0u);
  EXPECT_EQ(clicks_->ExpirePending(now + 7 * 3'600'000 + 60'000).value(), 1u);
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
  again.set_correction_gap(7);                        // a producer's value is replaced
  v1::ClickEvent missed = Click("a", "c3", 20, 9);    // class 1 again: miss
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
  // Each stored click carries its gap to the mask it was made on: 0 where it corrects nothing
  // (before any mask, a class's first click, a click the mask holds).
  auto gap = [&](const std::string& id) {
    v1::ClickEvent stored;
    EXPECT_TRUE(stored.ParseFromString(
        store_->Get(Family::kClicks, keys::Child(keys::Image("ds", "a"), id)).value().value()));
    return stored.correction_gap();
  };
  EXPECT_EQ(gap("c0"), 0);
  EXPECT_EQ(gap("c1"), 0);
  EXPECT_EQ(gap("c2"), 0);
  EXPECT_GT(gap("c3"), 0);  // 8 pixels right of the mask: 5-6 cells on the 16-cell grid
  EXPECT_LE(gap("c3"), 2);  //   capped at R/8
  EXPECT_EQ(gap("c4"), 0);
  EXPECT_GT(gap("c5"), 0);  // background inside the class-1 half
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
  EXPECT_EQ(record.fresh_clicks().negative_tested(), 2u);  // c4 and c5
  EXPECT_EQ(record.fresh_clicks().negative_hits(), 1u);    // c4

  // The per-version metrics carry the checks, alone when no mask of the version was scored.
  std::vector<v1::Metrics> versions = Evaluator::VersionMetrics(*store_, "ds").value();
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0].images(), 0u);
  EXPECT_EQ(versions[0].fresh_clicks().hits(), 2u);
  EXPECT_TRUE(Evaluator::VersionMetrics(*store_, "other").value().empty());
}

TEST_F(IntakeTest, FreshClickRecordsOfVersionsBeyondTheCurveAreDeleted) {
  ClickIntake clicks(store_.get(), letters_.get(), /*pending_timeout_ms=*/60'000,
                     /*keep_curve_versions=*/2);
  (void)(*images_)(Image("a"), Record("images", "", 0));
  auto checked = [&](uint64_t version) {
    return store_->Get(Family::kMetrics, keys::ClickChecks("ds", version)).value().has_value();
  };
  for (uint64_t v = 1; v <= 4; ++v) {
    v1::MaskResult mask;
    mask.set_dataset("ds");
    mask.set_image_id("a");
    mask.set_width(24);
    mask.set_height(16);
    mask.set_model_version(v);
    mask.set_mask(std::string(24 * 16, '\1'));
    ASSERT_TRUE(MaskCache(store_.get())(mask).ok());
    for (int i = 0; i < 2; ++i) {  // the second check of a version deletes nothing more
      const std::string id = "c" + std::to_string(v) + "_" + std::to_string(i);
      ASSERT_TRUE(
          clicks(Click("a", id, 3, 4), Record("clicks", "", static_cast<int64_t>(2 * v + i)))
              .click_checks);
    }
  }
  for (uint64_t v = 1; v <= 4; ++v) EXPECT_EQ(checked(v), v >= 3) << v;
  ASSERT_EQ(Evaluator::VersionMetrics(*store_, "ds").value().size(), 2u);
  EXPECT_EQ(Evaluator::VersionMetrics(*store_, "ds").value()[1].fresh_clicks().tested(), 2u);
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
