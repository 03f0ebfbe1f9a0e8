#include "model/augment.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/diffusion.h"

namespace clickdiff::model {
namespace {

// A batch whose image is its own target (as a float) and whose known map marks a few clicks, so a
// geometric change that moved the three apart would show.
AugmentBatch ClickBatch() {
  AugmentBatch batch;
  batch.target = torch::zeros({16, 12, 12}, torch::kLong);
  for (int64_t i = 0; i < 16; ++i) {
    batch.target[i][i % 12][(3 * i) % 12] = 1;
    batch.target[i][(i + 5) % 12][(i + 1) % 12] = 2;
  }
  batch.known = batch.target > 0;
  batch.image = batch.target.unsqueeze(1).to(torch::kFloat) / 2;
  return batch;
}

TEST(AugmentTest, FlipsAndQuarterTurnsMoveImageTargetAndClicksTogetherAndDropNoClick) {
  AugmentOptions options;
  options.flips = true;
  options.rotations = true;
  auto gen = MakeGenerator(7);
  const AugmentBatch before = ClickBatch();
  AugmentBatch after = before;
  Augment(options, gen, after);
  EXPECT_TRUE(torch::equal(after.image.squeeze(1), after.target.to(torch::kFloat) / 2));
  EXPECT_TRUE(torch::equal(after.known, after.target > 0));
  // Every example keeps its two clicks, of the same classes.
  EXPECT_TRUE(torch::equal(after.known.sum({1, 2}), before.known.sum({1, 2})));
  EXPECT_TRUE(torch::equal(after.target.sum({1, 2}), before.target.sum({1, 2})));
  // Some examples did change (16 examples: the chance that none did is 1/8^16).
  EXPECT_FALSE(torch::equal(after.target, before.target));
}

TEST(AugmentTest, IntensityAndNoiseChangeTheImageAloneWithinRangeAndRepeatUnderASeed) {
  AugmentOptions options;
  options.flips = false;
  options.intensity = 0.3;
  options.noise = 0.1;
  AugmentBatch batch = ClickBatch();
  batch.image = torch::rand({16, 1, 12, 12});
  const AugmentBatch before = batch;
  auto gen = MakeGenerator(3);
  Augment(options, gen, batch);
  EXPECT_TRUE(torch::equal(batch.target, before.target));
  EXPECT_TRUE(torch::equal(batch.known, before.known));
  EXPECT_GE(batch.image.min().item<float>(), 0.0f);
  EXPECT_LE(batch.image.max().item<float>(), 1.0f);
  EXPECT_GT((batch.image - before.image).abs().mean().item<float>(), 0.01f);

  AugmentBatch again = before;
  auto same = MakeGenerator(3);
  Augment(options, same, again);
  EXPECT_TRUE(torch::equal(again.image, batch.image));
}

TEST(AugmentTest, NothingOnLeavesTheBatchAsItWas) {
  AugmentOptions options;
  options.flips = false;
  AugmentBatch batch = ClickBatch();
  const AugmentBatch before = batch;
  auto gen = MakeGenerator(1);
  Augment(options, gen, batch);
  EXPECT_TRUE(torch::equal(batch.image, before.image));
  EXPECT_TRUE(torch::equal(batch.target, before.target));
}

}  // namespace
}  // namespace clickdiff::model
