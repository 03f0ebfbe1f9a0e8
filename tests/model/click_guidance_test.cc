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

TEST(ClickGuidanceTest, AGeodesicBumpIsWiderAndStopsAtAnEdge) {
  // 32x32: sigma 4 geodesic cells. The left half dark, the right half bright.
  auto image = torch::zeros({1, 1, 32, 32});
  image.slice(3, 16).fill_(1);
  const std::vector<std::vector<Click>> click = {{Click{10, 16, 1, true}}};
  const auto geodesic =
      ClickGuidance(click, 2, 32, torch::kCPU, ClickGuidanceKind::kGeodesic, image);
  ASSERT_EQ(geodesic.sizes(), (std::vector<int64_t>{1, 2, 32, 32}));
  const auto at = [&](int x, int y) { return geodesic[0][1][y][x].item<float>(); };
  EXPECT_FLOAT_EQ(at(10, 16), 1.0F);
  EXPECT_EQ(geodesic[0][0].abs().sum().item<float>(), 0.0F);  // no negative click
  // Six cells away on the click's side of the edge (a flat stretch: steps of length 1 cost 1).
  EXPECT_NEAR(at(4, 16), std::exp(-36.0 / 32.0), 1e-4);
  EXPECT_NEAR(at(10, 22), std::exp(-36.0 / 32.0), 1e-4);
  // Six cells away across the edge: nearly nothing. The gaussian bump does not see the edge.
  EXPECT_LT(at(16, 16), 0.01F);
  const auto gaussian = ClickGuidance(click, 2, 32, torch::kCPU);
  EXPECT_NEAR(gaussian[0][1][16][16].item<float>(), gaussian[0][1][16][4].item<float>(), 1e-6);
  EXPECT_EQ(GeodesicGuidanceSigma(64), 8.0);
  // The distance itself: zero at the seeds, chamfer steps on a flat image, inf without seeds.
  auto seeds = torch::zeros({8, 8}, torch::kBool);
  seeds[2][3] = true;
  const auto flat = GeodesicDistance(torch::zeros({3, 8, 8}), seeds);
  EXPECT_EQ(flat[2][3].item<float>(), 0.0F);
  EXPECT_FLOAT_EQ(flat[2][7].item<float>(), 4.0F);
  EXPECT_FLOAT_EQ(flat[5][6].item<float>(), static_cast<float>(3 * std::sqrt(2.0)));
  EXPECT_TRUE(
      std::isinf(GeodesicDistance(torch::zeros({1, 8, 8}), torch::zeros({8, 8}, torch::kBool))[0][0]
                     .item<float>()));
  // In colour an edge of hue alone stops it too: red on the left, blue on the right.
  auto colour = torch::zeros({1, 3, 32, 32});
  colour[0][0].slice(1, 0, 16).fill_(1);
  colour[0][2].slice(1, 16).fill_(1);
  const auto hue = ClickGuidance(click, 2, 32, torch::kCPU, ClickGuidanceKind::kGeodesic, colour);
  EXPECT_NEAR(hue[0][1][16][4].item<float>(), std::exp(-36.0 / 32.0), 1e-4);
  EXPECT_LT(hue[0][1][16][16].item<float>(), 0.01F);
  // Without its images a geodesic guidance is a caller's error.
  EXPECT_THROW(ClickGuidance(click, 2, 32, torch::kCPU, ClickGuidanceKind::kGeodesic),
               std::invalid_argument);
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
