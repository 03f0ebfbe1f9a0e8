// The evaluator on a real store and a real ZeroMQ socket: what it scores, what it stores per image
// and per model version, and what it publishes.
#include "nodes/evaluator.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "io/keys.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

// 4x2 images; the truth's organ is the left half.
const std::string kTruth = {1, 1, 0, 0, 1, 1, 0, 0};

class EvaluatorTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = testutil::OpenFreshStore("evaluator", &dir_); }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StoreLabel(const std::string& image, bool for_evaluation, int width = 4,
                  const std::string& ids = kTruth) {
    v1::LabelEvent label;
    label.set_dataset("ds");
    label.set_image_id(image);
    label.set_label_id(for_evaluation ? "truth" : "dense");
    label.set_for_evaluation(for_evaluation);
    label.mutable_dense()->set_width(width);
    label.mutable_dense()->set_height(2);
    label.mutable_dense()->set_class_ids(width == 4 ? ids : std::string(width * 2, '\1'));
    Put(Family::kLabels, keys::Child(keys::Image("ds", image), label.label_id()),
        label.SerializeAsString());
  }
  void StoreClicksSeen(uint64_t version, uint64_t clicks) {
    v1::ModelUpdate update;
    update.set_model_version(version);
    update.set_clicks_seen(clicks);
    Put(Family::kMetadata, keys::ModelUpdate(version), update.SerializeAsString());
  }
  void Put(Family family, const std::string& key, const std::string& value) {
    Store::Batch batch;
    batch.Put(family, key, value);
    ASSERT_TRUE(store_->Write(batch).ok());
  }
  static v1::MaskResult Mask(const std::string& image, const std::string& ids, uint64_t version,
                             uint64_t clicks) {
    v1::MaskResult mask;
    mask.set_dataset("ds");
    mask.set_image_id(image);
    mask.set_width(4);
    mask.set_height(2);
    mask.set_mask(ids);
    mask.set_model_version(version);
    mask.set_click_revision(clicks);
    return mask;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(EvaluatorTest, ScoresMasksOfImagesWithGroundTruthAndAggregatesEachVersion) {
  StoreLabel("a", true);
  StoreLabel("b", true);
  StoreLabel("c", true);
  StoreLabel("trained", false);
  StoreClicksSeen(3, 7);
  Evaluator evaluator(store_.get(), nullptr, nullptr, EvaluatorOptions{2, ""});

  // No ground truth (a training label is not one): nothing scored.
  Result<std::optional<v1::Metrics>> none = evaluator(Mask("trained", kTruth, 3, 1));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());

  // a: 2 of the 4 organ pixels plus 2 wrong ones: Dice 2*2/(4+4) = 0.5; never clicked.
  ASSERT_TRUE(evaluator(Mask("a", {1, 0, 1, 0, 1, 0, 1, 0}, 3, 0)).ok());
  // b: a perfect mask, clicked. At first it was empty (Dice 0), then redrawn at the same version.
  ASSERT_TRUE(evaluator(Mask("b", std::string(8, '\0'), 3, 1)).ok());
  Result<std::optional<v1::Metrics>> v3 = evaluator(Mask("b", kTruth, 3, 2));
  ASSERT_TRUE(v3.ok() && v3->has_value());
  const v1::Metrics& m = **v3;
  EXPECT_EQ(m.image_id(), "");
  EXPECT_EQ(m.model_version(), 3u);
  EXPECT_EQ(m.clicks_seen(), 7u);
  EXPECT_EQ(m.images(), 2u);  // b's redraw replaced its first score
  EXPECT_DOUBLE_EQ(m.mean_dice(), 0.75);
  ASSERT_EQ(m.classes_size(), 1);
  EXPECT_EQ(m.classes(0).class_id(), 1);
  EXPECT_DOUBLE_EQ(m.classes(0).iou(), (1.0 / 3 + 1.0) / 2);
  EXPECT_EQ(m.clicked_images(), 1u);
  EXPECT_DOUBLE_EQ(m.clicked_mean_dice(), 1.0);
  EXPECT_EQ(m.unclicked_images(), 1u);
  EXPECT_DOUBLE_EQ(m.unclicked_mean_dice(), 0.5);

  // An image without organ, predicted empty: no class to score, so it changes no mean (no NaN).
  StoreLabel("blank", true, 4, std::string(8, '\0'));
  Result<std::optional<v1::Metrics>> blank = evaluator(Mask("blank", std::string(8, '\0'), 3, 0));
  ASSERT_TRUE(blank.ok() && blank->has_value());
  EXPECT_EQ((*blank)->images(), 3u);
  EXPECT_DOUBLE_EQ((*blank)->mean_dice(), 0.75);
  EXPECT_EQ((*blank)->unclicked_images(), 1u);
  EXPECT_DOUBLE_EQ((*blank)->unclicked_mean_dice(), 0.5);

  // A later version (not trained by the service: no clicks recorded) has its own aggregate.
  Result<std::optional<v1::Metrics>> v10 = evaluator(Mask("c", kTruth, 10, 0));
  ASSERT_TRUE(v10.ok() && v10->has_value());
  EXPECT_EQ((*v10)->clicks_seen(), 0u);
  EXPECT_DOUBLE_EQ((*v10)->mean_dice(), 1.0);

  Result<std::vector<v1::Metrics>> curve = Evaluator::VersionMetrics(*store_, "ds");
  ASSERT_TRUE(curve.ok()) << curve.status().ToString();
  ASSERT_EQ(curve->size(), 2u);
  EXPECT_EQ((*curve)[0].model_version(), 3u);  // numeric order, not text order
  EXPECT_EQ((*curve)[1].model_version(), 10u);
  EXPECT_EQ(Evaluator::VersionMetrics(*store_, "").value().size(), 2u);
  EXPECT_TRUE(Evaluator::VersionMetrics(*store_, "d").value().empty());

  // Fresh-click checks (the click intake's) join their version's aggregate, or stand alone.
  for (uint64_t version : {3u, 5u}) {
    v1::Metrics checks;
    checks.set_dataset("ds");
    checks.set_model_version(version);
    checks.mutable_fresh_clicks()->set_tested(4);
    checks.mutable_fresh_clicks()->set_hits(version == 3 ? 3 : 1);
    Store::Batch batch;
    batch.Put(Family::kMetrics, keys::ClickChecks("ds", version), checks.SerializeAsString());
    ASSERT_TRUE(store_->Write(batch).ok());
  }
  curve = Evaluator::VersionMetrics(*store_, "ds");
  ASSERT_TRUE(curve.ok()) << curve.status().ToString();
  ASSERT_EQ(curve->size(), 3u);
  EXPECT_EQ((*curve)[0].images(), 3u);  // the scored aggregate kept
  EXPECT_EQ((*curve)[0].fresh_clicks().hits(), 3u);
  EXPECT_EQ((*curve)[1].model_version(), 5u);
  EXPECT_EQ((*curve)[1].images(), 0u);
  EXPECT_EQ((*curve)[1].fresh_clicks().hits(), 1u);
  EXPECT_EQ((*curve)[2].fresh_clicks().tested(), 0u);

  // A corrupt fresh-click record is left out; the query still answers.
  Store::Batch broken;
  broken.Put(Family::kMetrics, keys::ClickChecks("ds", 7), "\xff\xff not a record");
  ASSERT_TRUE(store_->Write(broken).ok());
  curve = Evaluator::VersionMetrics(*store_, "ds");
  ASSERT_TRUE(curve.ok()) << curve.status().ToString();
  EXPECT_EQ(curve->size(), 3u);
}

TEST_F(EvaluatorTest, ScoringANewerVersionDeletesTheRecordsOfVersionsNoLongerKept) {
  StoreLabel("a", true);
  StoreLabel("b", true);
  // Per-image records of the 2 newest versions a dataset was scored at, its curve of the 3 newest.
  Evaluator evaluator(store_.get(), nullptr, nullptr, EvaluatorOptions{2, "", 2, 3});
  auto images_at = [&](uint64_t version) {
    const std::string prefix = std::string("image") + '\0' + "ds" + '\0' + keys::Version(version);
    return store_->Count(Family::kMetrics, prefix).value();
  };
  auto curve = [&] {
    const std::vector<v1::Metrics> metrics = Evaluator::VersionMetrics(*store_, "ds").value();
    std::vector<uint64_t> versions;
    for (const v1::Metrics& m : metrics) versions.push_back(m.model_version());
    return versions;
  };
  for (uint64_t v = 1; v <= 5; ++v) {
    ASSERT_TRUE(evaluator(Mask("a", kTruth, v, 0)).ok());
    ASSERT_TRUE(evaluator(Mask("b", kTruth, v, 0)).ok());
  }
  for (uint64_t v = 1; v <= 5; ++v) EXPECT_EQ(images_at(v), v >= 4 ? 2u : 0u) << v;
  EXPECT_EQ(curve(), (std::vector<uint64_t>{3, 4, 5}));
  // A late mask of a version no longer kept is not scored: its records stay deleted.
  Result<std::optional<v1::Metrics>> late = evaluator(Mask("a", kTruth, 2, 0));
  ASSERT_TRUE(late.ok()) << late.status().ToString();
  EXPECT_FALSE(late->has_value());
  EXPECT_EQ(images_at(2), 0u);
  EXPECT_EQ(curve(), (std::vector<uint64_t>{3, 4, 5}));
  ASSERT_TRUE(evaluator(Mask("a", kTruth, 6, 0)).ok());
  EXPECT_EQ(images_at(2), 0u);
  EXPECT_EQ(images_at(4), 0u);
  EXPECT_EQ(images_at(5), 2u);
  EXPECT_EQ(curve(), (std::vector<uint64_t>{4, 5, 6}));

  // A new evaluator (a restart) deletes at its first score; a curve of 0 versions keeps them all.
  Evaluator restarted(store_.get(), nullptr, nullptr, EvaluatorOptions{2, "", 1, 0});
  ASSERT_TRUE(restarted(Mask("a", kTruth, 7, 0)).ok());
  EXPECT_EQ(images_at(5), 0u);
  EXPECT_EQ(images_at(6), 0u);
  EXPECT_EQ(images_at(7), 1u);
  EXPECT_EQ(curve(), (std::vector<uint64_t>{4, 5, 6, 7}));
}

TEST_F(EvaluatorTest, GroundTruthOfAnotherSizeIsAnErrorNamingTheImage) {
  StoreLabel("a", true, /*width=*/5);
  Evaluator evaluator(store_.get(), nullptr, nullptr, EvaluatorOptions{2, ""});
  Result<std::optional<v1::Metrics>> scored = evaluator(Mask("a", kTruth, 1, 0));
  ASSERT_FALSE(scored.ok());
  EXPECT_EQ(scored.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(scored.status().message().find("of a is 5x2 but its mask is 4x2"), std::string::npos)
      << scored.status().message();
  EXPECT_TRUE(Evaluator::VersionMetrics(*store_, "").value().empty());
}

TEST_F(EvaluatorTest, PublishesImageAndVersionMetricsOverZeroMq) {
  StoreLabel("a", true);
  ZmqConfig config;
  auto server = ZmqServer::Bind(config, [](const v1::Query&) { return v1::QueryReply(); });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  zmq::context_t context;
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::subscribe, MetricsTopic("ds"));
  sub.set(zmq::sockopt::rcvtimeo, 1000);
  sub.connect((*server)->publish_endpoint());

  // Metrics are not resent to late subscribers: score again until the subscription has arrived.
  Evaluator evaluator(store_.get(), nullptr, server->get(), EvaluatorOptions{2, ""});
  std::vector<v1::Metrics> received;
  for (int attempt = 0; attempt < 50 && received.size() < 2; ++attempt) {
    received.clear();
    ASSERT_TRUE(evaluator(Mask("a", kTruth, 1, 0)).ok());
    for (;;) {
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(sub, std::back_inserter(parts)).has_value()) break;
      ASSERT_EQ(parts.size(), 2u);
      EXPECT_EQ(parts[0].to_string(), "metrics.ds");
      v1::Metrics m;
      ASSERT_TRUE(m.ParseFromArray(parts[1].data(), static_cast<int>(parts[1].size())));
      received.push_back(m);
    }
  }
  ASSERT_GE(received.size(), 2u);
  EXPECT_EQ(received[0].image_id(), "a");  // the image's score, then its version's
  EXPECT_EQ(received[1].image_id(), "");
  EXPECT_DOUBLE_EQ(received[1].mean_dice(), 1.0);
}

}  // namespace
}  // namespace clickdiff
