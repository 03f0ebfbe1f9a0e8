// A mask's boundaries moved onto the image's edges (model::SnapToEdges): onto a nearby edge, never
// further than the band, not at all where the image is flat or constant.
#include "model/edge_snap.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace clickdiff::model {
namespace {

// A [1,h,w] image dark left of column `edge`, bright from it on.
torch::Tensor StepImage(int64_t h, int64_t w, int64_t edge) {
  auto image = torch::full({1, h, w}, 0.2F);
  image.slice(2, edge).fill_(0.8F);
  return image;
}

// A [h,w] mask of class `id` from column `from` on.
torch::Tensor RightOf(int64_t h, int64_t w, int64_t from, int64_t id = 1) {
  auto mask = torch::zeros({h, w}, torch::kLong);
  mask.slice(1, from).fill_(id);
  return mask;
}

int64_t Changed(const torch::Tensor& a, const torch::Tensor& b) {
  return a.ne(b).sum().item<int64_t>();
}

TEST(EdgeSnapTest, ABoundaryAFewPixelsOffMovesOntoTheEdgeFromEitherSide) {
  const auto image = StepImage(24, 40, 20);
  const auto truth = RightOf(24, 40, 20);
  for (int64_t from : {17, 23}) {  // the object's side grown by 3, then shrunk by 3
    const auto snapped = SnapToEdges(image, RightOf(24, 40, from), 2, 4, 1.0);
    EXPECT_EQ(Changed(snapped, truth), 0) << "mask from column " << from;
    EXPECT_EQ(snapped.scalar_type(), torch::kLong);
  }
}

TEST(EdgeSnapTest, AnEdgeBeyondTheBandMovesNothing) {
  // The edge lies 6 pixels from the boundary: a band of 2 holds no edge and keeps the mask; a band
  // of 6 reaches it and moves the boundary onto the blurred edge (columns 19-20).
  const auto image = StepImage(24, 40, 20);
  const auto mask = RightOf(24, 40, 14);
  EXPECT_EQ(Changed(SnapToEdges(image, mask, 2, 2, 1.0), mask), 0);
  const auto reached = SnapToEdges(image, mask, 2, 6, 1.0);
  EXPECT_EQ(reached.slice(1, 0, 19).sum().item<int64_t>(), 0);
  EXPECT_TRUE(reached.slice(1, 20).eq(1).all().item<bool>());
}

TEST(EdgeSnapTest, WhereTheImageIsFlatTheBoundaryStays) {
  // A smooth ramp has no edge to move to: the nearest cores split the band where it was.
  const auto ramp = torch::linspace(0, 1, 40).view({1, 1, 40}).expand({1, 24, 40}).contiguous();
  const auto mask = RightOf(24, 40, 20);
  EXPECT_EQ(Changed(SnapToEdges(ramp, mask, 2, 3, 1.0), mask), 0);
  // A constant image, a band of 0 and a mask of one class change nothing either.
  EXPECT_EQ(Changed(SnapToEdges(torch::ones({1, 24, 40}), RightOf(24, 40, 17), 2, 4, 1.0),
                    RightOf(24, 40, 17)),
            0);
  EXPECT_EQ(Changed(SnapToEdges(StepImage(24, 40, 20), RightOf(24, 40, 17), 2, 0, 1.0),
                    RightOf(24, 40, 17)),
            0);
  EXPECT_EQ(Changed(SnapToEdges(StepImage(24, 40, 20), RightOf(24, 40, 0), 2, 4, 1.0),
                    RightOf(24, 40, 0)),
            0);
}

TEST(EdgeSnapTest, AStructureThinnerThanTheBandKeepsItsPixels) {
  // A one-pixel line of class 2 inside class 1 on a flat image: it is its own centre line, so it
  // seeds itself and stays whole.
  auto mask = RightOf(24, 40, 10);
  mask.select(1, 25).fill_(2);
  const auto snapped = SnapToEdges(
      torch::zeros({1, 24, 40}).add_(0.5).index_put_({0, torch::indexing::Slice(), 0}, 0.0F), mask,
      3, 3, 1.0);
  EXPECT_EQ(snapped.select(1, 25).eq(2).sum().item<int64_t>(), 24);
  // A stripe 4 pixels wide between two wide classes, a band of 6, a flat image: nobody's pixels
  // move (neither does the stripe grab its neighbours' bands, nor they its own).
  auto stripe = RightOf(24, 40, 18);
  stripe.slice(1, 18, 22).fill_(2);
  EXPECT_EQ(Changed(SnapToEdges(torch::full({1, 24, 40}, 0.5F).index_put_({0, 0, 0}, 0.0F), stripe,
                                3, 6, 1.0),
                    stripe),
            0);
}

TEST(EdgeSnapTest, OnAFlatImageNoShapeChangesCornersAndDiagonalsIncluded) {
  // A square, an L and a one-pixel diagonal line on a flat image, a band wider than each: with
  // depths in the geodesic distance's own chamfer steps, no corner is cut and no line eaten.
  auto mask = torch::zeros({40, 40}, torch::kLong);
  mask.slice(0, 4, 12).slice(1, 4, 12).fill_(1);    // a square of 8
  mask.slice(0, 20, 36).slice(1, 4, 10).fill_(1);   // an L: its upright ...
  mask.slice(0, 30, 36).slice(1, 10, 24).fill_(1);  // ... and its foot
  for (int64_t i = 0; i < 14; ++i) mask[4 + i][22 + i] = 2;
  auto image = torch::full({1, 40, 40}, 0.5F);
  image[0][39][39] = 0.0F;  // not constant, so the search runs
  for (int64_t band : {2, 4, 8}) {
    EXPECT_EQ(Changed(SnapToEdges(image, mask, 3, band, 1.0), mask), 0) << "band " << band;
  }
}

TEST(EdgeSnapTest, ADiskDrawnTooSmallAndOffCentreGrowsOntoTheImagesDisk) {
  // A bright disk of radius 10 at (20, 20); the mask a disk of radius 8 at (21, 20).
  const auto y = torch::arange(40, torch::kFloat).view({40, 1});
  const auto x = torch::arange(40, torch::kFloat).view({1, 40});
  const auto r2 = [&](float cx, float cy) { return (x - cx).square() + (y - cy).square(); };
  const auto truth = r2(20, 20).le(100).to(torch::kLong);
  const auto image = (0.2 + 0.6 * truth.to(torch::kFloat)).unsqueeze(0);
  const auto mask = r2(21, 20).le(64).to(torch::kLong);
  const auto snapped = SnapToEdges(image, mask, 2, 4, 1.0);
  EXPECT_GT(Changed(mask, truth), 100);
  EXPECT_LE(Changed(snapped, truth), 12);  // a pixel here and there of the blurred rim's 60-odd
}

TEST(EdgeSnapTest, AnImageOfAnotherSizeIsRefused) {
  EXPECT_THROW(SnapToEdges(torch::zeros({1, 8, 8}), torch::zeros({8, 9}, torch::kLong), 2, 2, 1.0),
               c10::Error);
}

TEST(EdgeSnapTest, EachOfSeveralClassesFindsItsEdgeInAnyChannel) {
  // Three bands of colour that differ in the red channel alone; the mask's two boundaries are
  // 2 pixels off, one each way.
  auto image = torch::full({3, 20, 60}, 0.5F);
  image[0].slice(1, 20, 40).fill_(0.9F);
  image[0].slice(1, 40).fill_(0.1F);
  auto mask = torch::zeros({20, 60}, torch::kLong);
  mask.slice(1, 18, 42).fill_(1);
  mask.slice(1, 42).fill_(2);
  auto truth = torch::zeros({20, 60}, torch::kLong);
  truth.slice(1, 20, 40).fill_(1);
  truth.slice(1, 40).fill_(2);
  const auto snapped = SnapToEdges(image, mask, 3, 3, 1.0);
  EXPECT_EQ(Changed(snapped, truth), 0);
  // Intensities in any units: 16-bit values give the same mask.
  EXPECT_EQ(Changed(SnapToEdges(image * 65535, mask, 3, 3, 1.0), truth), 0);
}

}  // namespace
}  // namespace clickdiff::model
