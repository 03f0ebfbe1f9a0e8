// Clicks as network inputs: the guidance maps and clicks imposed on samples (what a click_input
// model trains on and draws: tests/model/segmenter_test.cc).
#include "model/click_guidance.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
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
  // From start values: a seed may start below zero, and the lesser start plus distance wins.
  auto start = torch::full({8, 8}, std::numeric_limits<float>::infinity());
  start[0][0] = -5.0F;
  start[0][7] = 0.0F;
  const auto from = GeodesicDistanceFrom(torch::zeros({1, 8, 8}), start);
  EXPECT_FLOAT_EQ(from[0][0].item<float>(), -5.0F);
  EXPECT_FLOAT_EQ(from[0][4].item<float>(), -1.0F);  // 4 steps from the -5 seed, not 3 from the 0
  EXPECT_FLOAT_EQ(from[0][7].item<float>(), 0.0F);   // its own start beats -5 + 7
  EXPECT_THROW(GeodesicDistanceFrom(torch::zeros({1, 8, 8}), torch::zeros({4, 4})), c10::Error);
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

// A bright 12x12 square (rows and columns 10-21) on a dark 32x32 image.
torch::Tensor SquareImage() {
  auto image = torch::full({1, 32, 32}, 0.2F);
  image.slice(1, 10, 22).slice(2, 10, 22).fill_(0.8F);
  return image;
}

torch::Tensor Square() {
  auto square = torch::zeros({32, 32}, torch::kBool);
  square.slice(0, 10, 22).slice(1, 10, 22).fill_(true);
  return square;
}

TEST(ClickGuidanceTest, AClickTheMaskMissesClaimsItsRegionUpToTheEdge) {
  // The mask holds the square's left half, where the first click was; the annotator clicks again
  // in the middle of the right half, and the mask holds only that click's own region (as a
  // network trained on clicks draws it: LabelUnclicked).
  auto mask = torch::zeros({32, 32}, torch::kLong);
  mask.slice(0, 10, 22).slice(1, 10, 16).fill_(1);
  const std::vector<Click> clicks = {Click{12, 15, 1, true}, Click{19, 15, 1, true}};
  auto shown = torch::zeros({32, 32}, torch::kBool);
  shown[15][19] = true;
  const auto own =
      ClickDistances(SquareImage(), shown.to(torch::kLong), shown, 2)[1].le(ClickRegionRadius(32));
  ASSERT_GT(own.sum().item<int64_t>(), 5);
  mask.masked_fill_(own, 1);
  const std::vector<ClickCorrection> c = ClickCorrections(SquareImage(), mask, clicks, 2.0);
  ASSERT_EQ(c.size(), 1U);
  EXPECT_EQ(c[0].class_id, 1);
  const auto claimed = c[0].reach.le(1);
  // The missed half but its rim (blurred, the edge's cost starts two cells inside it).
  EXPECT_TRUE(claimed.slice(0, 12, 20).slice(1, 16, 21).all().item<bool>());
  EXPECT_FALSE(claimed.logical_and(Square().logical_not()).any().item<bool>());  // no background
  EXPECT_LE(c[0].reach.max().item<float>(), 2.0F);
  // At reach 1 the region stops about where the mask begins: the far corners stay out.
  const auto near = ClickCorrections(SquareImage(), mask, clicks, 1.0)[0].reach.le(1);
  EXPECT_FALSE(near[10][21].item<bool>());
  // The same click alone is the structure's first: it corrects nothing.
  EXPECT_TRUE(ClickCorrections(SquareImage(), mask, {clicks[1]}, 2.0).empty());
}

TEST(ClickGuidanceTest, ANegativeClickClearsTheLeakAndKeepsTheObject) {
  // The mask holds the square and a 6-column leak of background to its right.
  auto mask = Square().to(torch::kLong);
  mask.slice(0, 10, 22).slice(1, 22, 28).fill_(1);
  const std::vector<ClickCorrection> c =
      ClickCorrections(SquareImage(), mask, {Click{25, 15, 1, false}}, 2.0);
  ASSERT_EQ(c.size(), 1U);
  EXPECT_EQ(c[0].class_id, 0);
  const auto cleared = c[0].reach.le(1);
  EXPECT_TRUE(cleared.slice(0, 12, 19).slice(1, 24, 28).all().item<bool>());
  EXPECT_FALSE(cleared.logical_and(Square()).any().item<bool>());
}

TEST(ClickGuidanceTest, ClicksTheMaskHoldsOrWhoseClassItLacksCorrectNothing) {
  const auto mask = Square().to(torch::kLong);
  const Click first{15, 15, 1, true};
  EXPECT_TRUE(ClickCorrections(SquareImage(), mask, {first, Click{12, 12, 1, true}}, 2.0).empty());
  EXPECT_TRUE(ClickCorrections(SquareImage(), mask, {first, Click{2, 2, 1, false}}, 2.0).empty());
  EXPECT_TRUE(ClickCorrections(SquareImage(), mask, {first, Click{2, 2, 2, true}}, 2.0).empty());
  EXPECT_TRUE(ClickCorrections(SquareImage(), mask, {first, Click{2, 2, 1, true}}, 0.0).empty());
  // One that does, in the background far from the object: its region is capped (R/8 = 4 cells
  // to the mask, so 8 at reach 2) and stays in the background.
  const auto far = ClickCorrections(SquareImage(), mask, {first, Click{2, 2, 1, true}}, 2.0);
  ASSERT_EQ(far.size(), 1U);
  const auto claimed = far[0].reach.le(1);
  EXPECT_FALSE(claimed.logical_and(Square()).any().item<bool>());
  EXPECT_FALSE(claimed[2][12].item<bool>());
}

TEST(ClickGuidanceTest, AClicksGapIsItsDistanceToTheMaskItWasMadeOn) {
  auto mask = torch::zeros({32, 32}, torch::kLong);
  mask.slice(0, 10, 22).slice(1, 10, 16).fill_(1);  // the square's left half
  const double gap = CorrectionGap(SquareImage(), mask, Click{18, 15, 1, true});
  EXPECT_GE(gap, 3.0);  // three cells from column 15, a little more on the blurred image
  EXPECT_LE(gap, 4.0);  // capped at R/8
  EXPECT_EQ(CorrectionGap(SquareImage(), mask, Click{12, 15, 1, true}), 0);   // held
  EXPECT_EQ(CorrectionGap(SquareImage(), mask, Click{2, 2, 1, false}), 0);    // held
  EXPECT_EQ(CorrectionGap(SquareImage(), mask, Click{19, 15, 2, true}), 0);   // class nowhere
  EXPECT_GT(CorrectionGap(SquareImage(), mask, Click{12, 15, 1, false}), 0);  // a false region
}

TEST(ClickGuidanceTest, AKnownGapCorrectsWhateverTheMaskDrawsNow) {
  // The network has since learnt the click's neighbourhood and more, but not the whole half: the
  // click's recorded gap still claims it. Known gaps skip the first-click rule too.
  auto mask = torch::zeros({32, 32}, torch::kLong);
  mask.slice(0, 10, 22).slice(1, 10, 16).fill_(1);
  mask.slice(0, 12, 19).slice(1, 16, 21).fill_(1);
  Click click{19, 15, 1, true, 4.0};
  const std::vector<ClickCorrection> c = ClickCorrections(SquareImage(), mask, {click}, 2.0);
  ASSERT_EQ(c.size(), 1U);
  const auto claimed = c[0].reach.le(1);
  EXPECT_TRUE(claimed.slice(0, 12, 20).slice(1, 16, 21).all().item<bool>());
  EXPECT_FALSE(claimed.logical_and(Square().logical_not()).any().item<bool>());
  click.gap = 0;  // made on a mask that held it
  EXPECT_TRUE(ClickCorrections(SquareImage(), mask, {click}, 2.0).empty());
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
