// Clicks as network inputs: the guidance maps and clicks imposed on samples (what a click_input
// model trains on and draws: tests/model/segmenter_test.cc).
#include "model/click_guidance.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace clickdiff::model {
namespace {

TEST(ClickGuidanceTest, EachClickIsABumpOfPeakOneInItsClassChannelNegativesInChannelZero) {
  // 32x32: sigma 1 cell.
  const auto guidance =
      ClickGuidance({{Click{5, 6, 2, true}, Click{1, 1, 1, false}}}, 3, 32, torch::kCPU);
  ASSERT_EQ(guidance.sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
  EXPECT_FLOAT_EQ(guidance[0][2][6][5].item<float>(), 1.0F);
  EXPECT_NEAR(guidance[0][2][6][6].item<float>(), std::exp(-0.5), 1e-5);
  EXPECT_NEAR(guidance[0][2][7][6].item<float>(), std::exp(-1.0), 1e-5);
  EXPECT_FLOAT_EQ(guidance[0][2][20][20].item<float>(), 0.0F);
  EXPECT_FLOAT_EQ(guidance[0][0][1][1].item<float>(), 1.0F);        // the negative click
  EXPECT_FLOAT_EQ(guidance[0][1].abs().sum().item<float>(), 0.0F);  // class 1: no click
  EXPECT_FLOAT_EQ(guidance[0][0][6][5].item<float>(), 0.0F);
  // Two clicks side by side stay capped at 1.
  const auto pair =
      ClickGuidance({{Click{5, 5, 1, true}, Click{6, 5, 1, true}}}, 2, 32, torch::kCPU);
  EXPECT_FLOAT_EQ(pair.max().item<float>(), 1.0F);
  EXPECT_EQ(ClickGuidanceSigma(64), 2.0);
  EXPECT_EQ(ClickGuidanceSigma(16), 1.0);
}

TEST(ClickGuidanceTest, ImposedClicksHoldInEverySample) {
  auto samples = torch::zeros({4, 8, 8}, torch::kLong);
  samples[2][3][3] = 1;
  ImposeClicks(samples, {Click{2, 1, 1, true}, Click{3, 3, 1, false}});
  EXPECT_TRUE(samples.select(2, 2).select(1, 1).eq(1).all().item<bool>());  // row 1, column 2
  EXPECT_TRUE(samples.select(2, 3).select(1, 3).eq(0).all().item<bool>());
  EXPECT_EQ(samples.sum().item<int64_t>(), 4);  // nothing else changed
}

}  // namespace
}  // namespace clickdiff::model
