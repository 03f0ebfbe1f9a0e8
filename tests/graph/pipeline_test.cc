// The flow graph on its own, fed directly (no consumer): backpressure, ordering of stored offsets,
// and drain.
#include "graph/pipeline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "config/model_options.h"
#include "io/embedded_broker.h"
#include "io/keys.h"
#include "model/segmenter.h"
#include "nodes/mask_cache.h"
#include "tests/graph/service_fixture.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

using testutil::Click;
using testutil::Eventually;
using testutil::FreshDir;
using testutil::PngImageEvent;
using testutil::Record;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    broker_ = EmbeddedBroker::Start(1).value();
    config_ = testutil::SmallServiceConfig(dir_, broker_->bootstrap_servers());
    config_.limits.max_in_flight = 4;
    store_ = Store::Open(config_.store).value();
    producer_ = KafkaProducer::Create(config_.kafka, broker_->bootstrap_servers()).value();
    zmq_ = ZmqServer::Bind(config_.zmq, [](const v1::Query&) { return v1::QueryReply(); }).value();
    auto serving = std::make_shared<ServingModel>();
    serving->segmenter = std::make_shared<model::Segmenter>(
        model::Segmenter::Create(SegmenterOptionsFrom(config_).value(), torch::kCPU).value());
    serving->version = 5;
    models_.Set(serving);
  }
  void TearDown() override {
    pipeline_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void MakePipeline() {
    PipelineDeps deps{store_.get(),
                      producer_.get(),
                      zmq_.get(),
                      &models_,
                      [this](const std::string& image_key) {
                        std::lock_guard<std::mutex> lock(mu_);
                        stored_.push_back(image_key);
                      },
                      [this](bool saturated) {
                        std::lock_guard<std::mutex> lock(mu_);
                        saturation_.push_back(saturated);
                      },
                      [this](const std::string& image_key) {
                        std::lock_guard<std::mutex> lock(mu_);
                        mask_stored_.push_back(image_key);
                      }};
    pipeline_ =
        Pipeline::Create(config_, deps, MakeAggregator(config_.aggregator, 2).value()).value();
  }

  std::string dir_;
  std::unique_ptr<EmbeddedBroker> broker_;
  Config config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<KafkaProducer> producer_;
  std::unique_ptr<ZmqServer> zmq_;
  ModelSlot models_;
  std::unique_ptr<Pipeline> pipeline_;
  std::mutex mu_;
  std::vector<bool> saturation_;          // GUARDED_BY(mu_)
  std::vector<std::string> stored_;       // GUARDED_BY(mu_): PipelineDeps::on_stored's keys
  std::vector<std::string> mask_stored_;  // GUARDED_BY(mu_): on_mask_stored's keys
};

TEST_F(PipelineTest, IntakeReportsEachImageWhoseRecordsItWrote) {
  MakePipeline();
  pipeline_->Admit(Record("images", PngImageEvent("a").SerializeAsString(), 0));
  pipeline_->Admit(Record("clicks", Click("a", "c1", 3, 3).SerializeAsString(), 0));
  pipeline_->Admit(Record("clicks", Click("a", "c1", 3, 3).SerializeAsString(), 1));  // again
  pipeline_->Admit(Record("clicks", Click("late", "c2", 3, 3).SerializeAsString(), 2));
  pipeline_->Admit(Record("clicks", "not a click", 3));
  pipeline_->WaitForIntake();
  EXPECT_EQ(pipeline_->counters().applied, 5u);
  EXPECT_EQ(pipeline_->counters().duplicates, 1u);
  EXPECT_EQ(pipeline_->counters().dead_letters, 1u);
  // The counts a STATUS query reports: the click waiting for its image is not a click yet.
  EXPECT_EQ(pipeline_->counters().stored.images, 1u);
  EXPECT_EQ(pipeline_->counters().stored.clicks, 1u);
  EXPECT_EQ(pipeline_->counters().stored.labels, 0u);
  std::lock_guard<std::mutex> lock(mu_);
  // Not the repeated click (nothing written) nor the malformed one (dead-lettered); the click
  // waiting for its image is stored, so it counts.
  EXPECT_EQ(stored_, (std::vector<std::string>{keys::Image("ds", "a"), keys::Image("ds", "a"),
                                               keys::Image("ds", "late")}));
}

TEST_F(PipelineTest, AClickedImagesFinalMaskIsReportedOnceCached) {
  MakePipeline();
  pipeline_->Admit(Record("images", PngImageEvent("bare").SerializeAsString(), 0));
  pipeline_->Admit(Record("images", PngImageEvent("a").SerializeAsString(), 1));
  pipeline_->Admit(Record("clicks", Click("a", "c1", 3, 3).SerializeAsString(), 0));
  pipeline_->WaitForIntake();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!mask_stored_.empty()) break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), end) << "no final mask of the clicked image";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pipeline_->Drain();
  std::lock_guard<std::mutex> lock(mu_);
  // The unclicked image's masks are not labels: only the clicked one's, drawn with its click.
  for (const std::string& key : mask_stored_) EXPECT_EQ(key, keys::Image("ds", "a"));
}

TEST_F(PipelineTest, SaturationPausesThenResumesAndEveryEventIsApplied) {
  MakePipeline();
  constexpr int kImages = 40;
  for (int i = 0; i < kImages; ++i) {
    pipeline_->Admit(
        Record("images", PngImageEvent("img" + std::to_string(i)).SerializeAsString(), i));
  }
  pipeline_->WaitForIntake();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_GE(saturation_.size(), 2u) << "40 events at once never saturated a limit of 4";
    EXPECT_TRUE(saturation_.front());
    EXPECT_FALSE(saturation_.back());  // resumed once intake caught up
    for (size_t i = 1; i < saturation_.size(); ++i) EXPECT_NE(saturation_[i], saturation_[i - 1]);
  }
  EXPECT_EQ(pipeline_->counters().applied, static_cast<uint64_t>(kImages));
  EXPECT_EQ(store_->Count(Family::kImages).value(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(pipeline_->counters().stored.images, static_cast<uint64_t>(kImages));
  // Intake is serial and in consumption order, so the stored offset is the last one + 1.
  EXPECT_EQ(store_->GetOffset("images", 0).value(), kImages);
}

TEST_F(PipelineTest, TheRecordsBytesInFlightPauseTheConsumerBeforeTheirCount) {
  // Ten records of 600 KiB each pass 1 MiB many times over (unless each were through intake before
  // the next was admitted); their count (10) is far under the limit.
  config_.limits.max_in_flight = 1000;
  config_.limits.max_in_flight_mb = 1;
  MakePipeline();
  const std::string big(600 << 10, 'x');  // not an image: each goes to the dead-letter topic
  for (int i = 0; i < 10; ++i) pipeline_->Admit(Record("images", big, i));
  pipeline_->WaitForIntake();
  size_t paused = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    paused = saturation_.size();
    ASSERT_GE(paused, 2u) << "6 MiB admitted under a 1 MiB limit never paused the consumer";
    EXPECT_TRUE(saturation_.front());
    EXPECT_FALSE(saturation_.back());  // resumed once intake caught up
    for (size_t i = 1; i < paused; ++i) EXPECT_NE(saturation_[i], saturation_[i - 1]);
  }
  EXPECT_EQ(pipeline_->counters().in_flight, 0u);
  EXPECT_EQ(pipeline_->counters().in_flight_bytes, 0u);
  EXPECT_EQ(pipeline_->counters().applied, 10u);

  // Small records under both limits never pause it.
  for (int i = 3; i < 23; ++i) {
    pipeline_->Admit(
        Record("images", PngImageEvent("s" + std::to_string(i)).SerializeAsString(), i));
  }
  pipeline_->WaitForIntake();
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(saturation_.size(), paused);
}

TEST_F(PipelineTest, MasksCarryTheServedModelVersionAndAreCached) {
  MakePipeline();
  pipeline_->Admit(Record("images", PngImageEvent("a").SerializeAsString(), 0));
  pipeline_->Admit(Record("clicks", Click("a", "c1", 3, 3).SerializeAsString(), 0));
  ASSERT_TRUE(Eventually([&] {
    MaskCache cache(store_.get());
    auto mask = cache.Lookup("ds", "a", 5, 1);
    return mask.ok() && mask->has_value();
  }));
  pipeline_->Drain();
  EXPECT_GE(pipeline_->counters().masks, 1u);
  EXPECT_EQ(pipeline_->counters().sample_errors, 0u);
}

TEST_F(PipelineTest, ShardedSamplersJoinEachRequestIntoAllNSamples) {
  config_.sampler.shards = 3;
  config_.sampler.samples = 7;
  MakePipeline();
  const char* ids[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; ++i) {
    pipeline_->Admit(Record("images", PngImageEvent(ids[i]).SerializeAsString(), i));
  }
  MaskCache cache(store_.get());
  ASSERT_TRUE(Eventually([&] {
    for (const char* id : ids) {
      auto mask = cache.Lookup("ds", id, 5, 0);
      if (!mask.ok() || !mask->has_value()) return false;
    }
    return true;
  }));
  pipeline_->Drain();
  for (const char* id : ids) {
    v1::MaskResult mask = cache.Lookup("ds", id, 5, 0).value().value();
    EXPECT_EQ(mask.samples(), 7u) << id;  // 3 + 2 + 2 joined
    EXPECT_EQ(mask.mask().size(), 24u * 16u) << id;
  }
  EXPECT_EQ(pipeline_->counters().sample_errors, 0u);
}

TEST_F(PipelineTest, StaleMasksAreRequestedAfterARestartAndFreshOnesAreNot) {
  MakePipeline();
  pipeline_->Admit(Record("images", PngImageEvent("a").SerializeAsString(), 0));
  pipeline_->Admit(Record("images", PngImageEvent("b").SerializeAsString(), 1));
  MaskCache cache(store_.get());
  ASSERT_TRUE(Eventually([&] {
    return cache.Current("ds", "a").value().has_value() &&
           cache.Current("ds", "b").value().has_value();
  }));
  pipeline_->Drain();
  pipeline_.reset();
  // A click recorded while no pipeline ran (as if the service died after storing it).
  Store::Batch batch;
  batch.Put(Family::kClicks, keys::Child(keys::Image("ds", "b"), "late"),
            Click("b", "late", 1, 1).SerializeAsString());
  ASSERT_TRUE(store_->Write(batch).ok());
  const uint64_t before = zmq_->published();
  MakePipeline();
  // A new pipeline counts what the store holds.
  EXPECT_EQ(pipeline_->counters().stored.images, 2u);
  EXPECT_EQ(pipeline_->counters().stored.clicks, 1u);
  pipeline_->RequestStaleMasks();
  ASSERT_TRUE(Eventually([&] {
    auto mask = cache.Current("ds", "b").value();
    return mask.has_value() && mask->click_revision() == 1;
  }));
  pipeline_->Drain();
  EXPECT_EQ(pipeline_->counters().masks, 1u);  // only b was redrawn
  EXPECT_GE(zmq_->published(), before + 1);
}

TEST_F(PipelineTest, AStaleSweepGoesToTheSamplersAPageAtATimeAndAsksForEachImageOnce) {
  // More stored images than a sweep's page (1024), none readable: a sampler is done with each at
  // once, with an error that counts its request.
  constexpr uint64_t kImages = 1500;
  Store::Batch batch;
  for (uint64_t i = 0; i < kImages; ++i) {
    batch.Put(Family::kImages, keys::Image("ds", "img" + std::to_string(i)), "not an image");
  }
  ASSERT_TRUE(store_->Write(batch).ok());
  MakePipeline();
  auto errors = [&] { return pipeline_->counters().sample_errors; };
  pipeline_->RequestStaleMasks();
  // Never more than a page and what was left of the last one (under 256) wait.
  size_t most_waiting = 0;
  ASSERT_TRUE(Eventually(
      [&] {
        most_waiting = std::max<size_t>(most_waiting, pipeline_->counters().infer_waiting);
        return errors() >= kImages;
      },
      std::chrono::seconds(60)));
  EXPECT_LE(most_waiting, 1024u + 256u);
  // Each image once, and then nothing more.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(errors(), kImages);
  // A new sweep starts over.
  pipeline_->RequestStaleMasks();
  ASSERT_TRUE(Eventually([&] { return errors() >= 2 * kImages; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(errors(), 2 * kImages);
}

}  // namespace
}  // namespace clickdiff
