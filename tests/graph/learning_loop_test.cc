// The learning loop end to end, in-process on the real components: a service with an untrained
// model receives generated images with ground truth for evaluation, then clicks in two rounds; it
// retrains (teacher-student on), redraws and scores every mask. The Dice of the published masks
// must rise clearly, every image must end with a mask of the last version, and nothing is lost.
// About two minutes on 2 cores.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

#include "model/synthetic.h"
#include "tests/graph/service_fixture.h"

namespace clickdiff {
namespace {

using testutil::Eventually;
using testutil::FreshDir;
using testutil::InProcessService;

constexpr int kImages = 40;
constexpr int kClicked = 30;  // the others are never clicked
constexpr auto kRoundTimeout = std::chrono::minutes(8);

std::string Id(int i) { return "img" + std::to_string(100 + i); }

v1::ImageEvent RawImage(const model::SyntheticSample& s, const std::string& id) {
  const torch::Tensor pixels = s.image.contiguous();
  v1::ImageEvent event;
  event.set_dataset("ds");
  event.set_image_id(id);
  event.set_width(static_cast<uint32_t>(pixels.size(2)));
  event.set_height(static_cast<uint32_t>(pixels.size(1)));
  event.set_channels(1);
  event.set_pixel_type(v1::PIXEL_TYPE_FLOAT32);
  event.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  event.set_payload(pixels.data_ptr<float>(), static_cast<size_t>(pixels.numel()) * sizeof(float));
  return event;
}

v1::LabelEvent Truth(const model::SyntheticSample& s, const std::string& id) {
  const torch::Tensor ids = s.mask.to(torch::kUInt8).contiguous();
  v1::LabelEvent label;
  label.set_dataset("ds");
  label.set_image_id(id);
  label.set_label_id("truth");
  label.set_for_evaluation(true);
  label.mutable_dense()->set_width(static_cast<uint32_t>(ids.size(1)));
  label.mutable_dense()->set_height(static_cast<uint32_t>(ids.size(0)));
  label.mutable_dense()->set_class_ids(ids.data_ptr<uint8_t>(), static_cast<size_t>(ids.numel()));
  return label;
}

class LearningLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir("learning_loop");
    broker_ = EmbeddedBroker::Start(1).value();
    config_ = testutil::SmallServiceConfig(dir_, broker_->bootstrap_servers());
    for (const std::string& topic : ServiceTopics(config_.kafka)) {
      ASSERT_TRUE(broker_->CreateTopic(topic, 1).ok());
    }
    producer_ = KafkaProducer::Create(config_.kafka, broker_->bootstrap_servers()).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Produce(const std::string& topic, const std::string& value) {
    ASSERT_TRUE(producer_->Produce(topic, "", value).ok());
  }

  // The evaluator's per-version curve, asked over the query socket.
  std::vector<v1::Metrics> Curve(const std::string& endpoint) {
    auto client = QueryClient::Connect(endpoint).value();
    v1::Query query;
    query.set_kind(v1::Query::KIND_METRICS);
    query.set_dataset("ds");
    Result<v1::QueryReply> reply = client->Ask(query, std::chrono::seconds(10));
    if (!reply.ok() || !reply->ok()) return {};
    return {reply->metrics().begin(), reply->metrics().end()};
  }

  // Waits until model version `version` has every image's mask scored.
  std::optional<v1::Metrics> WaitForSweep(const std::string& endpoint, uint64_t version) {
    std::optional<v1::Metrics> found;
    Eventually(
        [&] {
          for (const v1::Metrics& m : Curve(endpoint)) {
            if (m.model_version() == version && m.images() == kImages) found = m;
          }
          return found.has_value();
        },
        kRoundTimeout);
    return found;
  }

  std::string dir_;
  std::unique_ptr<EmbeddedBroker> broker_;
  Config config_;
  std::unique_ptr<KafkaProducer> producer_;
};

TEST_F(LearningLoopTest, DiceOfPublishedMasksRisesAsClicksArriveAndNothingIsLost) {
  config_.model = ModelConfig();                      // the product model at 64x64, untrained ...
  config_.model.method = model::Method::kGaussianX0;  // 4 evaluations per sample: short sweeps
  config_.sampler.samples = 8;
  config_.sampler.steps = 0;
  config_.aggregator.rule = model::AggregationRule::kDensity;
  config_.aggregator.density_sigma = 2;
  config_.aggregator.density_threshold = 0.5;
  config_.trainer.continuous = true;
  config_.trainer.snapshot_every_steps = 30;
  config_.trainer.snapshot_seconds = 1e9;  // versions by steps only: less timing in the result
  config_.trainer.steps_per_click = 4;
  config_.teacher.images_per_round = 10;
  config_.teacher.samples = 4;
  config_.teacher.steps = 0;
  config_.teacher.ramp_steps = 100;
  const std::vector<model::SyntheticSample> data =
      model::GenerateSynthetic(model::SyntheticOptions{}, kImages, 17);

  InProcessService service(config_);
  const std::string query = service.endpoints().query_endpoint;
  for (int i = 0; i < kImages; ++i) {
    Produce("images", RawImage(data[i], Id(i)).SerializeAsString());
    Produce("labels", Truth(data[i], Id(i)).SerializeAsString());
  }
  ASSERT_TRUE(producer_->Flush(std::chrono::seconds(20)).ok());
  std::optional<v1::Metrics> first = WaitForSweep(query, 0);
  ASSERT_TRUE(first.has_value()) << "the untrained model's masks were not all scored";

  uint64_t clicks = 0, version = 0;
  int64_t spent = 0;  // training steps
  std::optional<v1::Metrics> last;
  for (int round = 0; round < 2; ++round) {
    for (int i = round * kClicked / 2; i < (round + 1) * kClicked / 2; ++i) {
      for (size_t c = 0; c < data[i].clicks.size(); ++c) {
        const model::Click& click = data[i].clicks[c];
        v1::ClickEvent event;
        event.set_dataset("ds");
        event.set_image_id(Id(i));
        event.set_click_id("c" + std::to_string(c));
        event.set_x(static_cast<int32_t>(click.x));
        event.set_y(static_cast<int32_t>(click.y));
        event.set_class_id(static_cast<int32_t>(click.class_id));
        event.set_positive(true);
        Produce("clicks", event.SerializeAsString());
        ++clicks;
      }
    }
    ASSERT_TRUE(producer_->Flush(std::chrono::seconds(20)).ok());
    // A version comes every snapshot_every_steps steps and when the budget (steps_per_click per
    // click) is spent, so the version that spends a round's budget has a known number.
    const int64_t budget = static_cast<int64_t>(clicks) * config_.trainer.steps_per_click;
    const int64_t every = config_.trainer.snapshot_every_steps;
    version += static_cast<uint64_t>((budget - spent + every - 1) / every);
    spent = budget;
    last = WaitForSweep(query, version);
    ASSERT_TRUE(last.has_value()) << "round " << round << ": version " << version << " not scored";
    EXPECT_EQ(last->clicks_seen(), clicks);
  }

  std::string curve;
  for (const v1::Metrics& m : Curve(query)) {
    curve += " v" + std::to_string(m.model_version()) + " (" + std::to_string(m.clicks_seen()) +
             " clicks, " + std::to_string(m.images()) + " images) " +
             std::to_string(m.mean_dice()) + " (unclicked " +
             std::to_string(m.unclicked_mean_dice()) + ")";
  }
  RecordProperty("curve", curve);
  std::printf("learning curve:%s\n", curve.c_str());
  EXPECT_EQ(first->model_version(), 0u);
  // Measured: 0.20 at version 0, 0.44-0.48 after 15 clicks, 0.73 after 30 (never-clicked images
  // 0.72) twice on the 2-core development machine; 0.69 (0.70) on the CI machine, whose thread
  // count changes the arithmetic. Runs vary by a few hundredths with thread timing and with the
  // random stream (model.click_input draws for shown clicks even when an image has one click), so
  // the bounds sit below the spread: a loop that stops learning stays near 0.2-0.5.
  EXPECT_GT(last->mean_dice(), 0.65) << curve;
  EXPECT_GT(last->mean_dice(), first->mean_dice() + 0.35) << curve;
  EXPECT_GT(last->unclicked_images(), 0u);
  EXPECT_GT(last->unclicked_mean_dice(), 0.6) << curve;

  // Every image's current mask comes from that last version (or a newer one), with its clicks.
  auto client = QueryClient::Connect(query).value();
  for (int i = 0; i < kImages; ++i) {
    v1::Query q;
    q.set_kind(v1::Query::KIND_MASK);
    q.set_dataset("ds");
    q.set_image_id(Id(i));
    v1::QueryReply reply = client->Ask(q, std::chrono::seconds(10)).value();
    ASSERT_TRUE(reply.ok()) << Id(i) << ": " << reply.error();
    EXPECT_GE(reply.mask().model_version(), last->model_version()) << Id(i);
    EXPECT_EQ(reply.mask().click_revision(), i < kClicked ? data[i].clicks.size() : 0u) << Id(i);
  }
  // Nothing lost, nothing dead-lettered.
  v1::Query status_query;
  status_query.set_kind(v1::Query::KIND_STATUS);
  v1::ServiceStatus status = client->Ask(status_query, std::chrono::seconds(10)).value().status();
  EXPECT_EQ(status.images(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(status.labels(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(status.clicks(), clicks);
  EXPECT_EQ(status.dead_letters(), 0u);
  EXPECT_GE(status.evaluated(), static_cast<uint64_t>(kImages * 3));
  EXPECT_TRUE(service.Stop().ok());

  // The scores also went to the metrics topic, in order: two records (the image's, its version's)
  // per scored mask; among them every image's and the last version's complete aggregate. The
  // status counts a mask once the evaluator returns, after its records went out, so the count it
  // gives is a floor: the reader also waits for the last version's aggregate itself.
  auto is_last_version = [&](const v1::Metrics& m) {
    return m.image_id().empty() && m.model_version() == last->model_version() &&
           m.images() == static_cast<uint32_t>(kImages);
  };
  std::set<std::string> scored;
  bool last_version = false;
  const std::vector<KafkaMessage> records = testutil::ReadTopicsUntil(
      config_.kafka, broker_->bootstrap_servers(), {"metrics"},
      [&](const std::vector<KafkaMessage>& read) {
        if (read.size() < 2 * status.evaluated()) return false;
        return std::any_of(read.begin(), read.end(), [&](const KafkaMessage& m) {
          v1::Metrics metrics;
          return metrics.ParseFromString(m.value) && is_last_version(metrics);
        });
      },
      "metrics-reader");
  for (const KafkaMessage& m : records) {
    v1::Metrics metrics;
    ASSERT_TRUE(metrics.ParseFromString(m.value));
    if (!metrics.image_id().empty()) scored.insert(metrics.image_id());
    last_version |= is_last_version(metrics);
  }
  EXPECT_EQ(scored.size(), static_cast<size_t>(kImages));
  EXPECT_TRUE(last_version);
}

}  // namespace
}  // namespace clickdiff
