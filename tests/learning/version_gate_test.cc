// The continuous trainer's gate: which images it holds out, and that it refuses a version that
// does worse on them than the lowest a published version had.
#include "learning/version_gate.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/model_options.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

constexpr int kGrid = 16;

// Image `i`: a bright square whose place depends on i, with its dense mask.
ReplayExample Square(int i) {
  auto image = torch::full({3, kGrid, kGrid}, 0.1f);
  auto mask = torch::zeros({kGrid, kGrid}, torch::kInt64);
  const int64_t at = 2 + (i % 4) * 2;
  image.index_put_({torch::indexing::Slice(), torch::indexing::Slice(at, at + 6),
                    torch::indexing::Slice(at, at + 6)},
                   0.9f);
  mask.index_put_({torch::indexing::Slice(at, at + 6), torch::indexing::Slice(at, at + 6)}, 1);
  ReplayExample e;
  e.image_key = "img" + std::to_string(i);
  e.revision = 1;
  e.example = model::MakeDenseExample(image, mask, 2).value();
  return e;
}

std::vector<std::string> Keys(const std::vector<ReplayExample>& examples,
                              const std::vector<size_t>& indices) {
  std::vector<std::string> keys;
  for (size_t i : indices) keys.push_back(examples[i].image_key);
  return keys;
}

VersionGateOptions EveryImage(int64_t max_images) {
  VersionGateOptions o;
  o.share = 1.0;
  o.max_images = max_images;
  o.tolerance = 0.1;
  o.batch_size = 4;
  o.draws = 2;
  return o;
}

TEST(VersionGateTest, HoldsOutItsShareOfImagesByKey) {
  VersionGateOptions o;
  o.share = 0.3;
  VersionGate gate(o);
  int eligible = 0;
  for (int i = 0; i < 1000; ++i) eligible += gate.Eligible("img" + std::to_string(i)) ? 1 : 0;
  EXPECT_GT(eligible, 240);
  EXPECT_LT(eligible, 360);
  EXPECT_EQ(gate.Eligible("img7"), VersionGate(o).Eligible("img7"));  // the key decides
  o.share = 0;
  EXPECT_FALSE(VersionGate(o).Eligible("img7"));
}

// A gate whose first image, img100, came alone: with nothing else to train on it trained, for good.
VersionGate GateAfterAFirstImage(int64_t max_images) {
  VersionGate gate(EveryImage(max_images));
  const std::vector<ReplayExample> first = {Square(100)};
  EXPECT_EQ(gate.Split(first), std::vector<size_t>{0});
  EXPECT_EQ(gate.held_out(), 0u);
  return gate;
}

TEST(VersionGateTest, HoldsOutTheNewestImagesAndReleasesOlderOnesForGood) {
  VersionGate gate = GateAfterAFirstImage(2);
  std::vector<ReplayExample> seen = {Square(100), Square(0), Square(1)};
  EXPECT_EQ(Keys(seen, gate.Split(seen)), std::vector<std::string>{"img100"});
  EXPECT_EQ(gate.held_out(), 2u);
  seen.push_back(Square(2));  // img2 is newer: img0 is released into training
  EXPECT_EQ(Keys(seen, gate.Split(seen)), (std::vector<std::string>{"img100", "img0"}));
  EXPECT_EQ(gate.held_out(), 2u);
  // img0 trained: it is not held out again, even with room for it.
  std::vector<ReplayExample> fewer = {Square(100), Square(0), Square(2)};
  EXPECT_EQ(Keys(fewer, gate.Split(fewer)), (std::vector<std::string>{"img100", "img0"}));
  EXPECT_EQ(gate.held_out(), 1u);
}

TEST(VersionGateTest, WithNothingElseToTrainOnEveryImageTrainsInsteadOfIdling) {
  VersionGate gate(EveryImage(8));
  const std::vector<ReplayExample> all = {Square(0), Square(1), Square(2)};
  EXPECT_EQ(gate.Split(all), (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(gate.held_out(), 0u);
  // They trained: they are never held out later either; a newer pair is.
  const std::vector<ReplayExample> more = {Square(0), Square(1), Square(2), Square(3), Square(4)};
  EXPECT_EQ(gate.Split(more), (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(gate.held_out(), 2u);
}

TEST(VersionGateTest, MoreNewImagesThanItHoldsOutTrainTheOldestAndStillHoldOutTheNewest) {
  VersionGate gate(EveryImage(2));
  const std::vector<ReplayExample> all = {Square(0), Square(1), Square(2)};  // first seen in order
  EXPECT_EQ(gate.Split(all), std::vector<size_t>{0});
  EXPECT_EQ(gate.held_out(), 2u);
}

TEST(VersionGateTest, RefusesAVersionWorseThanTheLowestPublishedOnTheHeldOutImages) {
  torch::set_num_threads(1);
  const Config config = testutil::TinyModelConfig();
  const model::SegmenterOptions options = SegmenterOptionsFrom(config).value();
  model::Segmenter fresh = model::Segmenter::Create(options, torch::kCPU).value();
  model::Segmenter trained = model::Segmenter::Create(options, torch::kCPU).value();
  std::vector<ReplayExample> examples = {Square(0), Square(1), Square(2), Square(3)};
  std::vector<model::TrainingExample> data;
  for (const ReplayExample& e : examples) data.push_back(e.example);
  ASSERT_TRUE(testutil::Pretrain(trained, data));

  VersionGate gate = GateAfterAFirstImage(8);
  std::vector<ReplayExample> with_first = examples;
  with_first.insert(with_first.begin(), Square(100));
  EXPECT_EQ(gate.Split(with_first), std::vector<size_t>{0});
  // The served version learnt these images; a fresh candidate does far worse on them.
  GateVerdict worse = gate.Judge(fresh, trained).value();
  EXPECT_FALSE(worse.publish);
  EXPECT_EQ(worse.images, 4u);
  EXPECT_GT(worse.loss, 1.1f * worse.lowest);

  VersionGate other = GateAfterAFirstImage(8);
  (void)other.Split(with_first);
  GateVerdict better = other.Judge(trained, fresh).value();
  EXPECT_TRUE(better.publish);
  EXPECT_LT(better.loss, better.lowest);
  other.Published(better);
  // The reference is now the published version's loss, whichever model is served: no drift.
  GateVerdict after = other.Judge(fresh, fresh).value();
  EXPECT_FALSE(after.publish);
  EXPECT_FLOAT_EQ(after.lowest, better.loss);

  // One image held out is too few to judge: every version is published.
  VersionGate one = GateAfterAFirstImage(1);
  (void)one.Split(with_first);
  GateVerdict unjudged = one.Judge(fresh, trained).value();
  EXPECT_TRUE(unjudged.publish);
  EXPECT_EQ(unjudged.images, 1u);
}

}  // namespace
}  // namespace clickdiff
