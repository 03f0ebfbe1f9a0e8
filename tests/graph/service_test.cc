// The streaming service end to end, in-process, on the real components: events produced to a
// Kafka-protocol broker come out as masks on ZeroMQ; bad events land in dead-letter topics.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/broker_faults.h"
#include "io/keys.h"
#include "learning/continuous_trainer.h"
#include "model/checkpoint_store.h"
#include "model/trainer.h"
#include "services/runtime_file.h"
#include "tests/graph/service_fixture.h"
#include "tests/nodes/node_test_util.h"
#include "tests/services/run_cli.h"

namespace clickdiff {
namespace {

using ::testing::HasSubstr;
using testutil::Click;
using testutil::Eventually;
using testutil::FreshDir;
using testutil::InProcessService;
using testutil::PngImageEvent;
using testutil::SmallServiceConfig;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    broker_ = EmbeddedBroker::Start(1).value();
    config_ = SmallServiceConfig(dir_, broker_->bootstrap_servers());
    for (const std::string& topic : ServiceTopics(config_.kafka)) {
      ASSERT_TRUE(broker_->CreateTopic(topic, 1).ok());
    }
    producer_ = KafkaProducer::Create(config_.kafka, broker_->bootstrap_servers()).value();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Produce(const std::string& topic, const std::string& value, const std::string& key = "") {
    ASSERT_TRUE(producer_->Produce(topic, key, value).ok());
  }
  void Flush() { ASSERT_TRUE(producer_->Flush(std::chrono::seconds(20)).ok()); }

  // Collects masks from `endpoint` until `enough` holds for the latest mask per image.
  // The latest final mask of each image (previews are left out) once `enough` holds.
  std::map<std::string, v1::MaskResult> CollectMasks(
      const std::string& endpoint, const std::string& prefix,
      const std::function<bool(const std::map<std::string, v1::MaskResult>&)>& enough) {
    auto subscriber = MaskSubscriber::Connect(endpoint, prefix).value();
    std::map<std::string, v1::MaskResult> latest;
    Eventually([&] {
      for (;;) {  // masks may stream without a pause: check after each one
        auto mask = subscriber->Receive(std::chrono::milliseconds(100));
        if (!mask.ok() || !mask->has_value()) break;
        if ((*mask)->preview()) continue;
        latest[(*mask)->image_id()] = **mask;
        if (enough(latest)) return true;
      }
      return enough(latest);
    });
    return latest;
  }

  std::vector<KafkaMessage> ReadTopics(const std::vector<std::string>& topics, size_t at_least,
                                       const std::string& group) {
    return testutil::ReadTopics(config_.kafka, broker_->bootstrap_servers(), topics, at_least,
                                group);
  }

  v1::QueryReply Ask(const std::string& endpoint, v1::Query::Kind kind,
                     const std::string& image = "") {
    auto client = QueryClient::Connect(endpoint).value();
    v1::Query query;
    query.set_kind(kind);
    query.set_dataset("ds");
    query.set_image_id(image);
    return client->Ask(query, std::chrono::seconds(10)).value();
  }

  std::string dir_;
  std::unique_ptr<EmbeddedBroker> broker_;
  Config config_;
  std::unique_ptr<KafkaProducer> producer_;
};

TEST_F(ServiceTest, ANewBrokerIsReadFromItsStartWhateverOffsetsTheStoreHolds) {
  auto stored_images = [](const InProcessService& service) -> int64_t {
    auto client = QueryClient::Connect(service.endpoints().query_endpoint).value();
    v1::Query query;
    query.set_kind(v1::Query::KIND_STATUS);
    Result<v1::QueryReply> reply = client->Ask(query, std::chrono::seconds(5));
    return reply.ok() ? static_cast<int64_t>(reply->status().images()) : -1;
  };
  for (int i = 0; i < 3; ++i) {
    Produce("images", PngImageEvent("a" + std::to_string(i)).SerializeAsString());
  }
  Flush();
  {
    InProcessService service(config_);
    ASSERT_TRUE(Eventually([&] { return stored_images(service) == 3; }));
    ASSERT_TRUE(service.Stop().ok());
  }
  // Broker B (A still runs, so the two clusters' ids differ): its log holds more records than
  // the offset stored for A's, so an offset taken as B's would skip B's first three images.
  auto other = EmbeddedBroker::Start(1).value();
  for (const std::string& topic : ServiceTopics(config_.kafka)) {
    ASSERT_TRUE(other->CreateTopic(topic, 1).ok());
  }
  auto producer = KafkaProducer::Create(config_.kafka, other->bootstrap_servers()).value();
  for (int i = 0; i < 5; ++i) {
    const std::string id = "b" + std::to_string(i);
    ASSERT_TRUE(producer->Produce("images", id, PngImageEvent(id).SerializeAsString()).ok());
  }
  ASSERT_TRUE(producer->Flush(std::chrono::seconds(20)).ok());
  config_.kafka.bootstrap_servers = other->bootstrap_servers();
  InProcessService service(config_);
  EXPECT_TRUE(Eventually([&] { return stored_images(service) == 8; }))
      << stored_images(service) << " images stored";
}

TEST_F(ServiceTest, WithCurveOnlyClientsWhoseKeysItAllowsGetAnswers) {
  // The keys as an operator makes them: `clickdiff keygen`, the client's .pub in the directory.
  const std::string clients = dir_ + "/clients";
  std::filesystem::create_directories(clients);
  for (const char* name : {"server", "client"}) {
    testutil::CliRun made = testutil::RunClickdiff({"keygen", "--out", dir_ + "/" + name + ".key"});
    ASSERT_EQ(made.code, 0) << made.err;
    EXPECT_EQ(made.out.size(), 41U) << "the public key and a newline: " << made.out;
  }
  std::filesystem::copy_file(dir_ + "/client.key.pub", clients + "/client.key.pub");
  config_.zmq.curve.enabled = true;
  config_.zmq.curve.server_key_file = dir_ + "/server.key";
  config_.zmq.curve.client_keys_dir = clients;
  InProcessService service(config_);
  ASSERT_FALSE(service.endpoints().server_public_key.empty());

  v1::Query status;
  status.set_kind(v1::Query::KIND_STATUS);
  // The CLI's way: the endpoint and the server's key from the runtime file, its own key pair from
  // zmq.curve.client_key_file.
  Config allowed = config_;
  allowed.zmq.curve.client_key_file = dir_ + "/client.key";
  Result<ZmqTarget> target = ResolveZmq(allowed, "", ZmqSocket::kQuery);
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  auto client = QueryClient::Connect(target->endpoint, target->options).value();
  Result<v1::QueryReply> answered = client->Ask(status, std::chrono::seconds(10));
  ASSERT_TRUE(answered.ok()) << answered.status().ToString();
  EXPECT_TRUE(answered->ok());
  // Without its key file a client is a stranger, and so is the server's own key.
  Result<ZmqTarget> stranger = ResolveZmq(config_, "", ZmqSocket::kQuery);
  ASSERT_TRUE(stranger.ok()) << stranger.status().ToString();
  auto refused = QueryClient::Connect(stranger->endpoint, stranger->options).value();
  EXPECT_FALSE(refused->Ask(status, std::chrono::milliseconds(500)).ok());
  Config wrong = config_;
  wrong.zmq.curve.client_key_file = dir_ + "/server.key";
  auto impostor = QueryClient::Connect(target->endpoint,
                                       ResolveZmq(wrong, "", ZmqSocket::kQuery).value().options)
                      .value();
  EXPECT_FALSE(impostor->Ask(status, std::chrono::milliseconds(500)).ok());
  // A .pub file given as the client's key pair is named as such.
  wrong.zmq.curve.client_key_file = dir_ + "/client.key.pub";
  Status no_secret = ResolveZmq(wrong, "", ZmqSocket::kQuery).status();
  EXPECT_THAT(no_secret.message(), HasSubstr("zmq.curve.client_key_file")) << no_secret.ToString();
}

TEST_F(ServiceTest, ImagesAndClicksBecomeMasksTaggedWithVersionAndRevision) {
  InProcessService service(config_);
  for (const char* id : {"a", "b", "c"}) Produce("images", PngImageEvent(id).SerializeAsString());
  Flush();
  Produce("clicks", Click("a", "a1", 3, 4).SerializeAsString());
  Produce("clicks", Click("a", "a2", 10, 8).SerializeAsString());
  Produce("clicks", Click("b", "b1", 5, 5).SerializeAsString());
  Produce("clicks", Click("b", "b1", 5, 5).SerializeAsString());  // the same click again
  Flush();

  std::map<std::string, uint64_t> want = {{"a", 2}, {"b", 1}, {"c", 0}};
  auto masks = CollectMasks(service.endpoints().publish_endpoint, "mask.ds.", [&](const auto& got) {
    for (const auto& [id, revision] : want) {
      auto it = got.find(id);
      if (it == got.end() || it->second.click_revision() != revision) return false;
    }
    return true;
  });
  for (const auto& [id, revision] : want) {
    ASSERT_EQ(masks.count(id), 1u) << id;
    const v1::MaskResult& m = masks[id];
    EXPECT_EQ(m.click_revision(), revision) << id;
    EXPECT_EQ(m.model_version(), 0u);  // no checkpoint configured: the untrained version 0
    EXPECT_EQ(m.width(), 24u);
    EXPECT_EQ(m.height(), 16u);
    EXPECT_EQ(m.mask().size(), 24u * 16u);
    EXPECT_EQ(m.uncertainty().size(), 24u * 16u);
    EXPECT_EQ(m.samples(), 4u);
    EXPECT_GT(m.sequence(), 0u);
  }

  // A subscriber that connects now, when nothing new is being published, still gets the current
  // mask of its image.
  auto late = MaskSubscriber::Connect(service.endpoints().publish_endpoint, "mask.ds.a").value();
  std::optional<v1::MaskResult> current;
  Eventually(
      [&] {
        auto m = late->Receive(std::chrono::milliseconds(200));
        if (m.ok() && m->has_value()) current = **m;
        return current.has_value();
      },
      std::chrono::seconds(10));
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->image_id(), "a");
  EXPECT_EQ(current->click_revision(), 2u);

  // The query socket answers status, mask and image; an unknown image is a clear error.
  v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_EQ(status.status().images(), 3u);
  EXPECT_EQ(status.status().clicks(), 3u);  // the repeated click_id counted once
  EXPECT_EQ(status.status().bootstrap_servers(), broker_->bootstrap_servers());
  v1::QueryReply mask = Ask(service.endpoints().query_endpoint, v1::Query::KIND_MASK, "b");
  ASSERT_TRUE(mask.ok()) << mask.error();
  EXPECT_EQ(mask.mask().click_revision(), 1u);
  v1::QueryReply image = Ask(service.endpoints().query_endpoint, v1::Query::KIND_IMAGE, "c");
  ASSERT_TRUE(image.ok()) << image.error();
  EXPECT_EQ(image.image().width(), 24u);
  v1::QueryReply missing = Ask(service.endpoints().query_endpoint, v1::Query::KIND_MASK, "zz");
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.error(), HasSubstr("no mask yet for ds/zz"));

  EXPECT_TRUE(service.Stop().ok());
  // The runtime file that lets the CLI find the service is gone after a clean stop.
  EXPECT_FALSE(std::filesystem::exists(RuntimeFilePath(config_)));
}

TEST_F(ServiceTest, AClickGetsAPreviewFirstThenItsFinalMask) {
  // The preview (2 samples x 1 step, on a thread of its own) and the final mask are drawn at the
  // same time: the final one is made 640 times dearer, so the preview is out first.
  config_.sampler.samples = 64;
  config_.sampler.steps = 20;
  InProcessService service(config_);
  auto subscriber =
      MaskSubscriber::Connect(service.endpoints().publish_endpoint, "mask.ds.a").value();
  Produce("images", PngImageEvent("a").SerializeAsString());
  Flush();
  // The image's own mask (no preview: only a click asks for one) also proves the subscription.
  std::vector<v1::MaskResult> seen;
  uint64_t revision = 0;  // masks of older revisions (a late subscriber's current mask) are skipped
  auto receive_until = [&](const std::function<bool(const v1::MaskResult&)>& done) {
    Eventually([&] {
      auto mask = subscriber->Receive(std::chrono::milliseconds(100));
      if (!mask.ok() || !mask->has_value() || (*mask)->click_revision() < revision) return false;
      seen.push_back(**mask);
      return done(seen.back());
    });
  };
  receive_until([](const v1::MaskResult&) { return true; });
  ASSERT_FALSE(seen.empty());
  EXPECT_FALSE(seen[0].preview());
  EXPECT_EQ(seen[0].samples(), 64u);

  seen.clear();
  revision = 1;
  Produce("clicks", Click("a", "a1", 3, 4).SerializeAsString());
  Flush();
  receive_until([](const v1::MaskResult& m) { return !m.preview() && m.click_revision() == 1; });
  ASSERT_GE(seen.size(), 2u);
  // The preview comes first: preview_samples of preview_steps, with the click's revision.
  const v1::MaskResult& preview = seen[0];
  EXPECT_TRUE(preview.preview());
  EXPECT_EQ(preview.click_revision(), 1u);
  EXPECT_EQ(preview.samples(), 2u);
  EXPECT_EQ(preview.steps(), 1u);
  EXPECT_EQ(preview.mask().size(), 24u * 16u);
  const v1::MaskResult& final_mask = seen.back();
  EXPECT_EQ(final_mask.samples(), 64u);
  EXPECT_EQ(final_mask.steps(), 20u);
  EXPECT_GT(final_mask.sequence(), preview.sequence());
  // The image's current mask (the query, the store) is the final one; the status counts both.
  v1::QueryReply mask = Ask(service.endpoints().query_endpoint, v1::Query::KIND_MASK, "a");
  ASSERT_TRUE(mask.ok()) << mask.error();
  EXPECT_FALSE(mask.mask().preview());
  EXPECT_EQ(mask.mask().click_revision(), 1u);
  // (The counts move once the publish stage is done with a mask, after subscribers have it.)
  v1::ServiceStatus status;
  EXPECT_TRUE(Eventually([&] {
    status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS).status();
    return status.masks() >= 3;
  }));
  EXPECT_EQ(status.previews(), 1u);
  EXPECT_TRUE(service.Stop().ok());
}

TEST_F(ServiceTest, WithoutPreviewsAClickGetsItsFinalMaskOnly) {
  config_.sampler.preview_samples = 0;
  InProcessService service(config_);
  Produce("images", PngImageEvent("a").SerializeAsString());
  Produce("clicks", Click("a", "a1", 3, 4).SerializeAsString());
  Flush();
  auto masks = CollectMasks(service.endpoints().publish_endpoint, "mask.ds.", [](const auto& got) {
    auto it = got.find("a");
    return it != got.end() && it->second.click_revision() == 1;
  });
  ASSERT_EQ(masks.count("a"), 1u);
  v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
  EXPECT_EQ(status.status().previews(), 0u);
  EXPECT_TRUE(service.Stop().ok());
}

TEST_F(ServiceTest, EveryKindOfBadInputIsDeadLetteredAndGoodEventsAroundItAreProcessed) {
  config_.limits.max_payload_bytes = 64 * 1024;
  InProcessService service(config_);
  struct Bad {
    std::string topic, value, expect;
  };
  std::vector<Bad> bad;
  bad.push_back(
      {"images", std::string("\xde\xad\xbe\xef not protobuf"), "not a clickdiff.v1.ImageEvent"});
  std::string good_bytes = PngImageEvent("x").SerializeAsString();
  bad.push_back({"images", good_bytes.substr(0, good_bytes.size() - 7), "protobuf parse failed"});
  v1::ImageEvent wrong_size = PngImageEvent("w");
  wrong_size.set_height(17);
  bad.push_back({"images", wrong_size.SerializeAsString(), "the PNG is 24x16"});
  v1::ImageEvent truncated_png = PngImageEvent("t");
  truncated_png.set_payload(truncated_png.payload().substr(0, 60));
  bad.push_back({"images", truncated_png.SerializeAsString(), "payload"});
  bad.push_back({"images", std::string(100 * 1024, 'x'), "exceeds limits.max_payload_bytes"});
  v1::ImageEvent nan = PngImageEvent("n", 4, 2);
  nan.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  nan.set_pixel_type(v1::PIXEL_TYPE_FLOAT32);
  std::vector<float> pixels(8, 0.25f);
  pixels[3] = std::nanf("");
  nan.set_payload(reinterpret_cast<const char*>(pixels.data()), 32);
  bad.push_back({"images", nan.SerializeAsString(), "NaN"});
  bad.push_back({"images", PngImageEvent("").SerializeAsString(), "image_id: empty"});
  bad.push_back(
      {"images", PngImageEvent("../../escape").SerializeAsString(), "image_id: contains '/'"});
  bad.push_back(
      {"clicks", Click("good1", "out", 30, 4).SerializeAsString(), "outside image good1"});
  bad.push_back(
      {"clicks", Click("good1", "cls", 3, 4, 7).SerializeAsString(), "class_id 7 unknown"});
  bad.push_back({"clicks", Click("good1", "", 3, 4).SerializeAsString(), "click_id: empty"});
  bad.push_back(
      {"clicks", Click("nowhere", "ghost", 3, 4).SerializeAsString(), "unknown image ds/nowhere"});
  v1::LabelEvent label;
  label.set_dataset("ds");
  label.set_image_id("good2");
  label.set_label_id("truth");
  label.mutable_dense()->set_width(5);
  label.mutable_dense()->set_height(5);
  label.mutable_dense()->set_class_ids(std::string(25, '\1'));
  bad.push_back({"labels", label.SerializeAsString(), "5x5 but image good2 is 24x16"});
  v1::LabelEvent orphan = label;
  orphan.set_image_id("nowhere");
  bad.push_back({"labels", orphan.SerializeAsString(), "label for unknown image ds/nowhere"});
  v1::LabelEvent partial_truth = label;  // scribbles (255: unlabelled) train, they do not score
  partial_truth.set_for_evaluation(true);
  partial_truth.mutable_dense()->set_width(24);
  partial_truth.mutable_dense()->set_height(16);
  std::string strokes(24 * 16, '\xff');
  strokes.replace(0, 24, 24, '\0');
  partial_truth.mutable_dense()->set_class_ids(strokes);
  bad.push_back(
      {"labels", partial_truth.SerializeAsString(), "only a training label may be partial"});

  // Good events around and between the bad ones.
  Produce("images", PngImageEvent("good1").SerializeAsString());
  Produce("images", PngImageEvent("good2").SerializeAsString());
  Flush();
  for (size_t i = 0; i < bad.size(); ++i) {
    Produce(bad[i].topic, bad[i].value);
    Produce("images", PngImageEvent("between" + std::to_string(i)).SerializeAsString());
  }
  Produce("clicks", Click("good1", "fine", 3, 4).SerializeAsString());
  Flush();

  // Read the dead-letter topics with an ordinary consumer.
  std::vector<v1::DeadLetter> letters;
  for (const KafkaMessage& m :
       ReadTopics({"images.dlq", "clicks.dlq", "labels.dlq"}, bad.size(), "dlq-reader")) {
    ASSERT_TRUE(letters.emplace_back().ParseFromString(m.value));
  }
  ASSERT_EQ(letters.size(), bad.size());
  for (const Bad& b : bad) {
    // Each dead letter carries the refused record verbatim (a parked click is re-serialized,
    // identically), so it is found by its payload.
    auto it = std::find_if(letters.begin(), letters.end(),
                           [&](const v1::DeadLetter& l) { return l.payload() == b.value; });
    ASSERT_NE(it, letters.end()) << "no dead letter for the event expected to say '" << b.expect
                                 << "'";
    EXPECT_THAT(it->reason(), HasSubstr(b.expect));
    EXPECT_EQ(it->source_topic(), b.topic);
    EXPECT_GE(it->source_offset(), 0);
  }

  // Every good event went through: the service is still running and answers.
  v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.status().images(), 2u + bad.size());
  EXPECT_EQ(status.status().clicks(), 1u);
  EXPECT_EQ(status.status().dead_letters(), bad.size());
  EXPECT_TRUE(service.Stop().ok());
}

TEST_F(ServiceTest, ContinuousTrainingPublishesVersionsAndRedrawsEveryMaskWithThem) {
  config_.trainer.continuous = true;
  config_.trainer.snapshot_every_steps = 10;
  config_.trainer.keep_versions = 2;
  config_.trainer.batch_size = 2;
  uint64_t last = 0;
  {
    InProcessService service(config_);
    // "a" is in colour: the default model (model.color auto) takes RGB and gray images alike.
    Produce("images", testutil::RgbPngImageEvent("a").SerializeAsString());
    for (const char* id : {"b", "c"}) Produce("images", PngImageEvent(id).SerializeAsString());
    Produce("clicks", Click("a", "a1", 3, 4).SerializeAsString());
    Produce("clicks", Click("b", "b1", 5, 5).SerializeAsString());
    Flush();
    // Every image, clicked or not, gets masks drawn by versions the trainer made.
    auto masks =
        CollectMasks(service.endpoints().publish_endpoint, "mask.ds.", [](const auto& got) {
          if (got.size() < 3) return false;
          for (const auto& [id, m] : got) {
            if (m.model_version() < 2) return false;
          }
          return true;
        });
    ASSERT_EQ(masks.size(), 3u);
    for (const auto& [id, m] : masks) EXPECT_GE(m.model_version(), 2u) << id;
    EXPECT_EQ(masks["a"].click_revision(), 1u);
    EXPECT_EQ(masks["c"].click_revision(), 0u);
    v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
    ASSERT_TRUE(status.ok());
    EXPECT_GE(status.status().model_version(), 2u);
    ASSERT_TRUE(service.Stop().ok());
  }
  {
    auto store = Store::Open(config_.store).value();
    v1::StoredImage colour;
    ASSERT_TRUE(colour.ParseFromString(
        store->Get(Family::kImages, keys::Image("ds", "a")).value().value_or("")));
    EXPECT_EQ(colour.grid_channels(), 3u);
    auto current = store->Get(Family::kMetadata, VersionStore::kCurrentVersionKey).value();
    ASSERT_TRUE(current.has_value());
    last = std::stoull(*current);
    ASSERT_GE(last, 2u);
    // The last two versions are kept, older ones deleted.
    for (uint64_t v = 1; v <= last; ++v) {
      EXPECT_EQ(store->Get(Family::kModels, VersionStore::ModelKey(v)).value().has_value(),
                v + 2 > last)
          << v;
    }
  }
  // Each version was announced on model-updates, with the supervision it learnt from.
  std::set<uint64_t> announced;
  for (const KafkaMessage& m : ReadTopics({"model-updates"}, last, "updates-reader")) {
    v1::ModelUpdate update;
    ASSERT_TRUE(update.ParseFromString(m.value));
    announced.insert(update.model_version());
    EXPECT_GE(update.clicks_seen(), 1u);
    if (update.model_version() == last) {
      EXPECT_EQ(update.clicks_seen(), 2u);
    }
    EXPECT_EQ(update.checkpoint_key(), VersionStore::ModelKey(update.model_version()));
  }
  for (uint64_t v = 1; v <= last; ++v) EXPECT_EQ(announced.count(v), 1u) << v;

  // A restart serves the last version the service trained, not the configured model.
  config_.trainer.continuous = false;
  InProcessService again(config_);
  v1::QueryReply status = Ask(again.endpoints().query_endpoint, v1::Query::KIND_STATUS);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status.status().model_version(), last);
  EXPECT_TRUE(again.Stop().ok());
}

// The mock broker keeps about 5 MB a partition (KafkaTest.RecordsTheBrokerDeletedBefore...): a
// service that was down while 7 MB arrived finds its next record gone, and STATUS says how many.
TEST_F(ServiceTest, RecordsTheBrokerDeletedBeforeTheServiceReadThemAreCountedInStatus) {
  {
    InProcessService service(config_);
    Produce("images", PngImageEvent("a").SerializeAsString());
    Flush();
    ASSERT_TRUE(Eventually([&] {
      return Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS).status().images() == 1;
    }));
    v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
    EXPECT_EQ(status.status().skipped_records(), 0u);
    ASSERT_TRUE(service.Stop().ok());
  }
  const std::string big(900 * 1000, 'x');  // not an event: each one is dead-lettered when read
  for (int i = 0; i < 8; ++i) Produce("images", big);
  Flush();
  InProcessService again(config_);
  v1::QueryReply status;
  ASSERT_TRUE(Eventually([&] {
    status = Ask(again.endpoints().query_endpoint, v1::Query::KIND_STATUS);
    return status.status().skipped_records() > 0 &&
           status.status().skipped_records() + status.status().dead_letters() == 8;
  })) << status.DebugString();
  EXPECT_GT(status.status().dead_letters(), 0u);  // what the broker still held was read
}

TEST_F(ServiceTest, TheServiceRidesOutBrokerFaultsLosingNothingAndRecoversByItself) {
  // The broker goes down for 3 s, then answers fetches and heartbeats with errors and is slow
  // (no produce errors: see ops/chaos/faults.yaml), while images, clicks and bad events stream in:
  // every good event is stored, every bad one dead-lettered once, and a click after the faults gets
  // its mask.
  const std::vector<BrokerFault> plan = ParseBrokerFaults(R"(
- {at: 1, down: 3}
- {at: 6, errors: 5, request: fetch, error: NOT_LEADER_FOR_PARTITION}
- {at: 6.5, errors: 3, request: heartbeat, error: NOT_COORDINATOR}
- {at: 8, slow: 2, rtt_ms: 200}
)",
                                                          1)
                                            .value();
  InProcessService service(config_);
  std::thread faults(
      [&] { EXPECT_TRUE(RunBrokerFaults(*broker_, plan, [] { return false; }).ok()); });
  constexpr int kImages = 40;
  std::set<std::string> bad;
  for (int i = 0; i < kImages; ++i) {  // over 10 s, through every fault
    const std::string id = "f" + std::to_string(i);
    Produce("images", PngImageEvent(id).SerializeAsString());
    Produce("clicks", Click(id, "c" + std::to_string(i), 3, 4).SerializeAsString());
    if (i % 8 == 0) {
      const std::string garbage = "bad event " + std::to_string(i);
      bad.insert(garbage);
      Produce("images", garbage);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  faults.join();
  Flush();
  v1::QueryReply status;
  EXPECT_TRUE(Eventually(
      [&] {
        status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
        return status.status().images() == kImages && status.status().clicks() == kImages &&
               status.status().dead_letters() == bad.size();
      },
      std::chrono::minutes(2)))
      << status.DebugString();
  EXPECT_EQ(status.status().skipped_records(), 0u);
  std::vector<KafkaMessage> letters = ReadTopics({"images.dlq"}, bad.size(), "dlq-reader");
  std::multiset<std::string> payloads;
  for (const KafkaMessage& m : letters) {
    v1::DeadLetter letter;
    ASSERT_TRUE(letter.ParseFromString(m.value));
    payloads.insert(letter.payload());
  }
  EXPECT_EQ(payloads, std::multiset<std::string>(bad.begin(), bad.end()));
  // Working after the faults: a new click on a stored image comes back as its mask.
  auto subscriber =
      MaskSubscriber::Connect(service.endpoints().publish_endpoint, "mask.ds.f0").value();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the subscription takes hold
  Produce("clicks", Click("f0", "after", 10, 8).SerializeAsString());
  Flush();
  EXPECT_TRUE(Eventually([&] {
    auto mask = subscriber->Receive(std::chrono::milliseconds(100));
    return mask.ok() && mask->has_value() && (*mask)->click_revision() >= 2;
  }));
  EXPECT_TRUE(service.Stop().ok());
}

// The service at the larger grids, with images cropped to their content.
class ServiceGridTest : public ServiceTest, public ::testing::WithParamInterface<int> {};

TEST_P(ServiceGridTest, ACroppedImageTrainsAVersionAndComesBackAsAMaskAtItsOwnSize) {
  config_.model.resolution = GetParam();
  config_.model.levels = 3;
  config_.model.crop_to_content = true;
  config_.trainer.continuous = true;
  config_.trainer.snapshot_every_steps = 2;
  config_.trainer.batch_size = 2;
  // A 96x64 gray image, black but for a textured 48x32 box at (40, 8).
  std::vector<uint8_t> pixels(96 * 64, 0);
  for (int y = 8; y < 40; ++y) {
    for (int x = 40; x < 88; ++x) pixels[static_cast<size_t>(y) * 96 + x] = 60 + (x * 7 + y) % 190;
  }
  v1::ImageEvent image = PngImageEvent("a", 96, 64);
  const std::vector<uint8_t> png = EncodePngGray8(pixels, 96, 64).value();
  image.set_payload(png.data(), png.size());
  {
    InProcessService service(config_);
    Produce("images", image.SerializeAsString());
    Produce("clicks", Click("a", "a1", 60, 20).SerializeAsString());
    Flush();
    auto masks =
        CollectMasks(service.endpoints().publish_endpoint, "mask.ds.", [](const auto& got) {
          auto it = got.find("a");
          return it != got.end() && it->second.model_version() >= 1;
        });
    ASSERT_EQ(masks.count("a"), 1u);
    const v1::MaskResult& mask = masks["a"];
    EXPECT_GE(mask.model_version(), 1u);  // a version trained at this grid drew it
    ASSERT_EQ(mask.width(), 96u);
    ASSERT_EQ(mask.height(), 64u);
    EXPECT_EQ(mask.mask()[20 * 96 + 60], 1);  // the click
    // The region is the box and a 2-px margin, [38, 90) x [6, 42); the mask's edges may move a
    // pixel onto the image's (aggregator.edge_band): outside that, background, certainly.
    for (int y = 0; y < 64; ++y) {
      for (int x = 0; x < 96; ++x) {
        if (x >= 37 && x < 91 && y >= 5 && y < 43) continue;
        ASSERT_EQ(mask.mask()[static_cast<size_t>(y) * 96 + x], 0) << x << "," << y;
        ASSERT_EQ(mask.uncertainty()[static_cast<size_t>(y) * 96 + x], 0) << x << "," << y;
      }
    }
    ASSERT_TRUE(service.Stop().ok());
  }
  auto store = Store::Open(config_.store).value();
  v1::StoredImage stored;
  ASSERT_TRUE(stored.ParseFromString(
      store->Get(Family::kImages, keys::Image("ds", "a")).value().value_or("")));
  EXPECT_EQ(stored.grid_resolution(), static_cast<uint32_t>(GetParam()));
  EXPECT_EQ(stored.region_x(), 38u);
  EXPECT_EQ(stored.region_y(), 6u);
  EXPECT_EQ(stored.region_width(), 52u);
  EXPECT_EQ(stored.region_height(), 36u);
}

INSTANTIATE_TEST_SUITE_P(Grids, ServiceGridTest, ::testing::Values(128, 256));

TEST_F(ServiceTest, ABacklogOfImagesAndClicksLosesNoClickToTheWaitingTimeout) {
  // Produced while the service was down: clicks are read far ahead of their images (tiny records,
  // while images queue behind the graph's in-flight limit), and wait much longer than the
  // timeout. They expire by the images stream's progress, not by uptime, so none is lost.
  config_.limits.pending_click_timeout_ms = 200;
  constexpr int kImages = 3000;
  for (int i = 0; i < kImages; ++i) {
    const std::string id = "i" + std::to_string(i);
    Produce("images", PngImageEvent(id, 8, 8).SerializeAsString());
    Produce("clicks", Click(id, "c", 2, 2).SerializeAsString());
  }
  Flush();
  InProcessService service(config_);
  v1::QueryReply status;
  EXPECT_TRUE(Eventually(
      [&] {
        status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
        return status.status().clicks() + status.status().dead_letters() >= kImages;
      },
      std::chrono::minutes(5)));
  EXPECT_EQ(status.status().images(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(status.status().clicks(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(status.status().dead_letters(), 0u);
  EXPECT_TRUE(service.Stop().ok());
}

TEST_F(ServiceTest, AnImageOfFloatExtremesNeitherStopsTrainingNorReachesTheWeights) {
  // +-3e38 are finite float32s, so decoding takes them; they used to become NaN in
  // preprocessing, a click on the image back-propagated NaN into every weight, and the version
  // was stored and resumed.
  config_.trainer.continuous = true;
  config_.trainer.snapshot_every_steps = 10;
  config_.trainer.batch_size = 2;
  uint64_t highest_sent = 0;
  {
    InProcessService service(config_);
    auto subscriber =
        MaskSubscriber::Connect(service.endpoints().publish_endpoint, "mask.ds.").value();
    v1::ImageEvent extremes = PngImageEvent("extremes", 4, 2);
    extremes.set_encoding(v1::PAYLOAD_ENCODING_RAW);
    extremes.set_pixel_type(v1::PIXEL_TYPE_FLOAT32);
    const std::vector<float> pixels = {3e38f, -3e38f, 3e38f, -3e38f, -3e38f, 3e38f, 1, 0};
    extremes.set_payload(reinterpret_cast<const char*>(pixels.data()), 32);
    Produce("images", extremes.SerializeAsString());
    Produce("images", PngImageEvent("plain").SerializeAsString());
    Produce("clicks", Click("extremes", "e1", 1, 1).SerializeAsString());
    Produce("clicks", Click("plain", "p1", 5, 5).SerializeAsString());
    Flush();
    std::map<std::string, uint64_t> versions;
    EXPECT_TRUE(Eventually([&] {
      for (;;) {
        auto mask = subscriber->Receive(std::chrono::milliseconds(100));
        if (!mask.ok() || !mask->has_value()) break;
        highest_sent = std::max(highest_sent, (*mask)->sequence());
        if (!(*mask)->preview()) versions[(*mask)->image_id()] = (*mask)->model_version();
      }
      return versions["extremes"] >= 3 && versions["plain"] >= 3;
    })) << "versions go on, and both images are redrawn by them";
    v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status.status().skipped_steps(), 0u);
    EXPECT_EQ(status.status().withheld_versions(), 0u);
    EXPECT_EQ(status.status().unreadable_images(), 0u);
    EXPECT_EQ(status.status().dead_letters(), 0u);
    ASSERT_TRUE(service.Stop().ok());
  }
  {
    auto store = Store::Open(config_.store).value();
    auto current = store->Get(Family::kMetadata, VersionStore::kCurrentVersionKey).value();
    ASSERT_TRUE(current.has_value());
    const uint64_t last = std::stoull(*current);
    auto bytes = store->Get(Family::kModels, VersionStore::ModelKey(last)).value();
    ASSERT_TRUE(bytes.has_value());
    Result<model::Segmenter> model =
        model::CheckpointStore::FromBytes(*bytes, "the last version", torch::kCPU);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_TRUE(model::WeightsFinite(*model)) << "version " << last;
  }

  // After a restart, masks are numbered above every number the first run sent (previews
  // included, which are not stored), so a client keeping the highest per topic takes them.
  config_.trainer.continuous = false;
  InProcessService again(config_);
  auto subscriber =
      MaskSubscriber::Connect(again.endpoints().publish_endpoint, "mask.ds.plain").value();
  Produce("clicks", Click("plain", "p2", 9, 9).SerializeAsString());
  Flush();
  std::optional<v1::MaskResult> fresh;
  EXPECT_TRUE(Eventually([&] {
    auto mask = subscriber->Receive(std::chrono::milliseconds(100));
    if (mask.ok() && mask->has_value() && (*mask)->click_revision() == 2) fresh = **mask;
    return fresh.has_value();
  }));
  ASSERT_TRUE(fresh.has_value());
  EXPECT_GT(fresh->sequence(), highest_sent);
  EXPECT_TRUE(again.Stop().ok());
}

// `clickdiff annotate` drives a learning service through Kafka and ZeroMQ alone: every click comes
// back as a mask that reflects it, and with --learn-wait as the mask of a version trained on it;
// with --save-masks reached it saves as training labels the masks that reached the target alone.
TEST_F(ServiceTest, SimulatedAnnotatorClicksUntilTheTargetAndSeesVersionsTrainedOnItsClicks) {
  testutil::CliRun generated = testutil::RunClickdiff(
      {"generate", "--out", dir_ + "/data", "--count", "2", "--size", "32", "--seed", "3"});
  ASSERT_EQ(generated.code, 0) << generated.err;
  config_.trainer.continuous = true;
  config_.trainer.steps_per_click = 2;
  config_.trainer.batch_size = 2;
  config_.teacher.enabled = false;
  InProcessService service(config_);
  // The annotator on `dataset` (each run its own: a label is kept once per image).
  auto annotate = [&](const std::string& dataset, const std::string& max_clicks,
                      const std::string& target, const std::string& learn_wait,
                      const std::string& save) {
    return testutil::RunClickdiff({"annotate", "--images=" + dir_ + "/data/images",
                                   "--truth=" + dir_ + "/data/truth", "--dataset=" + dataset,
                                   "--max-clicks=" + max_clicks, "--target=" + target,
                                   "--learn-wait=" + learn_wait, "--save-masks=" + save,
                                   "--bootstrap=" + broker_->bootstrap_servers(),
                                   "--endpoint=" + service.endpoints().publish_endpoint,
                                   "--query-endpoint=" + service.endpoints().query_endpoint});
  };
  // Dice 1 is out of reach of this tiny model: each structure takes all --max-clicks clicks.
  testutil::CliRun run = annotate("ds", "2", "1", "60", "reached");
  ASSERT_EQ(run.code, 0) << run.err;
  std::vector<nlohmann::json> clicks, images;
  nlohmann::json session;
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record["event"] == "click") clicks.push_back(record);
    if (record["event"] == "image") images.push_back(record);
    if (record["event"] == "session") session = record;
  }
  ASSERT_EQ(clicks.size(), 4u);
  ASSERT_EQ(images.size(), 2u);
  for (size_t i = 0; i < clicks.size(); ++i) {
    const nlohmann::json& c = clicks[i];
    EXPECT_EQ(c["revision"], i % 2 + 1) << c;
    EXPECT_EQ(c["class"], 1);
    EXPECT_GT(c["response_ms"].get<double>(), 0);
    // The click's first answer (its preview, or the final mask when that came as soon) is never
    // later than the final mask, and is scored too.
    EXPECT_LE(c["first_ms"].get<double>(), c["response_ms"].get<double>()) << c;
    EXPECT_GE(c["first_dice"].get<double>(), 0) << c;
    // Every click is waited on until a version trained on it drew the image's mask.
    ASSERT_FALSE(c["learned_ms"].is_null()) << c;
    EXPECT_GE(c["learned_ms"].get<double>(), c["response_ms"].get<double>());
    EXPECT_GE(c["model_version"].get<uint64_t>(), i + 1);  // one version per click at least
    EXPECT_GE(c["dice"].get<double>(), 0);
  }
  EXPECT_TRUE(clicks[0]["positive"]);  // the first click of a structure is on it
  EXPECT_EQ(images[0]["clicks"], 2);
  EXPECT_FALSE(images[0]["reached"]);
  EXPECT_EQ(session["clicks"], 4);
  EXPECT_EQ(session["images"], 2);
  EXPECT_EQ(session["learned"], 4);
  EXPECT_GT(session["first_ms_p50"].get<double>(), 0);
  // The service stored every click and reports the clicks its served version was trained on.
  v1::QueryReply status = Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS);
  EXPECT_EQ(status.status().clicks(), 4u);
  EXPECT_EQ(status.status().model_clicks_seen(), 4u);
  // No mask reached Dice 1: none saved.
  EXPECT_FALSE(images[0]["saved"]);
  EXPECT_FALSE(images[1]["saved"]);
  EXPECT_EQ(status.status().labels(), 0u);

  // At target 0 every mask is reached after one click per structure and saved; with "all" an
  // unreached one is saved too.
  auto labels = [&] {
    return Ask(service.endpoints().query_endpoint, v1::Query::KIND_STATUS).status().labels();
  };
  run = annotate("reached", "1", "0", "0", "reached");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(Eventually([&] { return labels() == 2; })) << labels();
  run = annotate("all", "1", "1", "0", "all");
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(Eventually([&] { return labels() == 4; })) << labels();
  EXPECT_TRUE(service.Stop().ok());
}

TEST_F(ServiceTest, OutsideClientsWorkKcatInAndPythonSubscriberOut) {
  if (std::system("command -v kcat >/dev/null 2>&1") != 0) GTEST_SKIP() << "kcat not installed";
  InProcessService service(config_);
  const std::string event_file = dir_ + "/image.pb";
  {
    std::ofstream out(event_file, std::ios::binary);
    out << PngImageEvent("from-kcat").SerializeAsString();
  }
  const std::string kcat = "kcat -P -b " + broker_->bootstrap_servers() +
                           " -t images -k from-kcat " + event_file + " 2>&1";
  ASSERT_EQ(std::system(kcat.c_str()), 0) << kcat;

  // The Python subscriber uses python3-zmq and code protoc generates from schemas/.
  const std::string gen = dir_ + "/py";
  std::filesystem::create_directories(gen);
  const std::string protoc = std::string("protoc --proto_path=") + CLICKDIFF_SOURCE_DIR +
                             " --python_out=" + gen + " " + CLICKDIFF_SOURCE_DIR +
                             "/schemas/events.proto";
  ASSERT_EQ(std::system(protoc.c_str()), 0) << protoc;
  const std::string script = dir_ + "/subscriber.py";
  {
    std::ofstream out(script);
    out << "import sys, zmq\n"
           "from schemas import events_pb2\n"
           "ctx = zmq.Context()\n"
           "sub = ctx.socket(zmq.SUB)\n"
           "sub.connect(sys.argv[1])\n"
           "sub.setsockopt(zmq.SUBSCRIBE, b'mask.ds.from-kcat')\n"
           "if not sub.poll(60000):\n"
           "    sys.exit('no mask within 60 s')\n"
           "topic, payload = sub.recv_multipart()\n"
           "m = events_pb2.MaskResult()\n"
           "m.ParseFromString(payload)\n"
           "print(topic.decode(), m.image_id, m.width, m.height, len(m.mask), m.model_version)\n";
  }
  const std::string python = "PYTHONPATH=" + gen + " /usr/bin/python3 " + script + " " +
                             service.endpoints().publish_endpoint + " > " + dir_ + "/py.out 2>&1";
  ASSERT_EQ(std::system(python.c_str()), 0);
  std::ifstream in(dir_ + "/py.out");
  std::string printed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(printed, "mask.ds.from-kcat from-kcat 24 16 384 0\n");
  EXPECT_TRUE(service.Stop().ok());
}

}  // namespace
}  // namespace clickdiff
