#include "model/aggregator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace clickdiff::model {
namespace {

Aggregator Make(AggregatorOptions options) {
  Result<Aggregator> a = Aggregator::Create(options);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return std::move(a).value();
}

// Samples [N, 1, W] from per-pixel vote lists: votes[x] holds the N votes of pixel x.
torch::Tensor Samples(const std::vector<std::vector<int64_t>>& votes) {
  const int64_t w = static_cast<int64_t>(votes.size());
  const int64_t n = static_cast<int64_t>(votes[0].size());
  torch::Tensor s = torch::zeros({n, 1, w}, torch::kLong);
  for (int64_t x = 0; x < w; ++x) {
    for (int64_t i = 0; i < n; ++i) s[i][0][x] = votes[x][i];
  }
  return s;
}

TEST(AggregatorTest, MajorityVotesPerPixelAndBreaksTiesTowardsLowerIds) {
  AggregatorOptions o;
  o.num_classes = 3;
  const Aggregator agg = Make(o);
  // pixel 0: votes {0,0,1} -> 0; pixel 1: {1,1,0} -> 1; pixel 2: {0,1,2} three-way tie -> 0;
  // pixel 3: {2,2,2} -> 2.
  Result<Aggregation> r = agg.Aggregate(Samples({{0, 0, 1}, {1, 1, 0}, {0, 1, 2}, {2, 2, 2}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mask.sizes(), torch::IntArrayRef({1, 4}));
  EXPECT_EQ(r->mask.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(r->mask, torch::tensor({0, 1, 0, 2}, torch::kLong).view({1, 4})));
  // Normalized entropy: pixel 0 (2/3, 1/3, 0): (2/3 ln 3/2 + 1/3 ln 3) / ln 3 = 0.579380;
  // pixel 2 (1/3, 1/3, 1/3): 1; pixel 3 (all agree): 0.
  EXPECT_NEAR(r->uncertainty[0][0].item<float>(), 0.579380f, 1e-5);
  EXPECT_NEAR(r->uncertainty[0][2].item<float>(), 1.0f, 1e-5);
  EXPECT_NEAR(r->uncertainty[0][3].item<float>(), 0.0f, 1e-6);
  EXPECT_NEAR(r->vote_fractions[1][0][1].item<float>(), 2.0f / 3.0f, 1e-6);
}

TEST(AggregatorTest, OneMinusMaxUncertaintyIsNormalizedToOne) {
  AggregatorOptions o;
  o.num_classes = 3;
  o.uncertainty = UncertaintyKind::kOneMinusMax;
  const Aggregator agg = Make(o);
  Result<Aggregation> r = agg.Aggregate(Samples({{0, 0, 1}, {0, 1, 2}, {2, 2, 2}}));
  ASSERT_TRUE(r.ok());
  // (1 - 2/3) / (1 - 1/3) = 0.5; (1 - 1/3) / (2/3) = 1; agreement 0.
  EXPECT_NEAR(r->uncertainty[0][0].item<float>(), 0.5f, 1e-6);
  EXPECT_NEAR(r->uncertainty[0][1].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(r->uncertainty[0][2].item<float>(), 0.0f, 1e-6);
}

TEST(AggregatorTest, ThresholdRuleLetsAMinorityForegroundWinAndPicksTheHighestCandidate) {
  AggregatorOptions o;
  o.num_classes = 3;
  o.rule = AggregationRule::kThreshold;
  o.threshold = 0.25;
  const Aggregator agg = Make(o);
  // N = 10. pixel 0: bg 5, c1 3, c2 2 -> only c1 >= 0.25 -> 1 (majority would say 0).
  // pixel 1: bg 3, c1 3, c2 4 -> both candidates, c2 highest -> 2.
  // pixel 2: bg 7, c1 2, c2 1 -> no candidate -> 0.
  Result<Aggregation> r = agg.Aggregate(Samples({{0, 0, 0, 0, 0, 1, 1, 1, 2, 2},
                                                 {0, 0, 0, 1, 1, 1, 2, 2, 2, 2},
                                                 {0, 0, 0, 0, 0, 0, 0, 1, 1, 2}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(torch::equal(r->mask, torch::tensor({1, 2, 0}, torch::kLong).view({1, 3})));

  o.class_thresholds = {0.0, 0.5, 0.15};  // c1 needs 50%, c2 only 15%
  r = Make(o).Aggregate(Samples({{0, 0, 0, 0, 0, 1, 1, 1, 2, 2}}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mask[0][0].item<int64_t>(), 2);
}

// Sparse point clouds inside a disk, as paper 000 describes single D3PM samples.
// A disk of radius 15 at the centre of a 64x64 grid, and n samples that each mark `points` pixels
// drawn at random inside it (sparse point clouds, as D3PM samples trained on clicks look).
struct DiskClouds {
  torch::Tensor disk;     // [64,64] bool
  torch::Tensor core;     // [64,64] bool: within 12 px of the centre
  torch::Tensor samples;  // [n,64,64] uint8
};

DiskClouds MakeDiskClouds(int64_t n, int64_t points, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t size = 64;
  const double radius = 15.0, cx = 31.5, cy = 31.5;
  torch::Tensor ys = torch::arange(size).view({size, 1}).to(torch::kFloat).expand({size, size});
  torch::Tensor xs = torch::arange(size).view({1, size}).to(torch::kFloat).expand({size, size});
  DiskClouds out;
  out.disk = ((ys - cy).pow(2) + (xs - cx).pow(2)) <= radius * radius;
  out.core = ((ys - cy).pow(2) + (xs - cx).pow(2)) <= 12.0 * 12.0;
  torch::Tensor inside = out.disk.flatten().nonzero().flatten();
  out.samples = torch::zeros({n, size * size}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor pick = inside.index({torch::randint(inside.size(0), {points}, torch::kLong)});
    out.samples[i].index_fill_(0, pick, 1);
  }
  out.samples = out.samples.view({n, size, size});
  return out;
}

double DiceOf(const torch::Tensor& fg, const torch::Tensor& truth) {
  const double tp = (fg & truth).sum().item<double>();
  return 2 * tp / (fg.sum().item<double>() + truth.sum().item<double>());
}

TEST(AggregatorTest, DensityRuleTurnsSparsePointCloudsInsideADiskIntoAFilledDisk) {
  const DiskClouds clouds = MakeDiskClouds(32, 20, 3);
  AggregatorOptions o;  // K = 2
  Result<Aggregation> majority = Make(o).Aggregate(clouds.samples);
  ASSERT_TRUE(majority.ok());
  EXPECT_EQ(majority->mask.sum().item<int64_t>(), 0) << "a 50% vote of sparse clouds is empty";

  o.rule = AggregationRule::kDensity;
  o.density_sigma = 3.0;
  o.density_relative_threshold = 0.3;
  Result<Aggregation> dense = Make(o).Aggregate(clouds.samples);
  ASSERT_TRUE(dense.ok()) << dense.status().ToString();
  torch::Tensor fg = dense->mask == 1;
  EXPECT_GT(DiceOf(fg, clouds.disk), 0.85);
  // No holes: everything within 12 px of the centre is foreground.
  EXPECT_TRUE((fg | ~clouds.core).all().item<bool>());
}

TEST(AggregatorTest, OtsuRuleFillsTheDiskWhateverTheCloudsDensity) {
  AggregatorOptions o;
  o.rule = AggregationRule::kOtsu;
  o.density_sigma = 3.0;
  o.otsu_floor = 0.01;
  const Aggregator otsu = Make(o);
  // From 40 to 400 points per sample: the vote density inside the disk varies 10-fold (0.06 to
  // 0.57 of the samples per pixel); one rule, no threshold to tune, fills the disk at every one.
  for (const int64_t points : {40, 120, 400}) {
    const DiskClouds clouds = MakeDiskClouds(16, points, 5);
    Result<Aggregation> r = otsu.Aggregate(clouds.samples);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const torch::Tensor fg = r->mask == 1;
    EXPECT_GT(DiceOf(fg, clouds.disk), 0.9) << points << " points per sample";
    EXPECT_TRUE((fg | ~clouds.core).all().item<bool>()) << points << " points per sample";
  }
}

TEST(AggregatorTest, OtsuRuleLeavesAClassBelowTheFloorEmpty) {
  AggregatorOptions o;
  o.num_classes = 3;
  o.rule = AggregationRule::kOtsu;
  o.density_sigma = 1.0;
  o.otsu_floor = 0.05;
  torch::Tensor samples = torch::zeros({16, 32, 32}, torch::kLong);
  samples.slice(1, 4, 12).slice(2, 4, 12).fill_(1);  // class 1: an 8x8 square in every sample
  samples.index_put_({0, 20, 20}, 2);                // class 2: one stray vote
  Result<Aggregation> r = Make(o).Aggregate(samples);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((r->mask == 2).sum().item<int64_t>(), 0);
  EXPECT_EQ(r->mask[8][8].item<int64_t>(), 1);
  EXPECT_EQ(r->mask[25][25].item<int64_t>(), 0);
  o.otsu_floor = 1.0;
  EXPECT_FALSE(Aggregator::Create(o).ok());
}

TEST(AggregatorTest, DensityRuleNeverInventsAClassWithoutVotes) {
  AggregatorOptions o;
  o.num_classes = 3;
  o.rule = AggregationRule::kDensity;
  const Aggregator agg = Make(o);
  torch::Tensor samples = torch::zeros({4, 16, 16}, torch::kLong);
  samples.index_put_({0, 8, 8}, 1);
  Result<Aggregation> r = agg.Aggregate(samples);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((r->mask == 2).sum().item<int64_t>(), 0);
  EXPECT_EQ(r->mask[8][8].item<int64_t>(), 1);
  EXPECT_EQ(r->mask[0][0].item<int64_t>(), 0);
}

TEST(AggregatorTest, DecideAtSizeResizesVoteFractionsToTheImageSize) {
  // K = 2, 4x4: class 1 has fraction 1 in columns 0-1 and 0 in columns 2-3. Bilinear to 8x8
  // (align_corners false): output column x samples source (x + 0.5) / 2 - 0.5, so column 3 reads
  // 1.25 -> 0.75 (class 1) and column 4 reads 1.75 -> 0.25 (background).
  torch::Tensor c1 = torch::zeros({4, 4});
  c1.slice(1, 0, 2).fill_(1.0f);
  torch::Tensor fractions = torch::stack({1 - c1, c1});
  Result<Aggregation> r = Make(AggregatorOptions{}).DecideAtSize(fractions, 8, 8);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mask.sizes(), torch::IntArrayRef({8, 8}));
  EXPECT_EQ(r->uncertainty.sizes(), torch::IntArrayRef({8, 8}));
  EXPECT_EQ(r->vote_fractions.sizes(), torch::IntArrayRef({2, 8, 8}));
  torch::Tensor expected = torch::zeros({8, 8}, torch::kLong);
  expected.slice(1, 0, 4).fill_(1);
  EXPECT_TRUE(torch::equal(r->mask, expected));

  AggregatorOptions density;
  density.rule = AggregationRule::kDensity;
  density.density_sigma = 1.0;
  density.density_relative_threshold = 0.5;
  r = Make(density).DecideAtSize(fractions, 8, 6);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mask.sizes(), torch::IntArrayRef({8, 6}));
  EXPECT_EQ(r->mask[4][0].item<int64_t>(), 1);
  EXPECT_EQ(r->mask[4][5].item<int64_t>(), 0);
}

TEST(AggregatorTest, TheMaskOnTheImageHoldsItsClicks) {
  AggregatorOptions o;
  o.num_classes = 3;
  const Aggregator agg = Make(o);
  // A 16x8 image on an 8x8 grid: every sample says class 1 everywhere.
  Result<GridMapping> mapping = MakeGridMapping(16, 8, 8);
  ASSERT_TRUE(mapping.ok());
  const auto samples = torch::ones({4, 8, 8}, torch::kLong);
  Result<Aggregation> r =
      agg.AggregateOnImage(samples, *mapping, {Click{15, 7, 2, true}, Click{0, 0, 1, false}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->mask.sizes(), torch::IntArrayRef({8, 16}));
  EXPECT_EQ(r->mask[7][15].item<int64_t>(), 2);  // the positive click's class
  EXPECT_EQ(r->mask[0][0].item<int64_t>(), 0);   // the negative click: background
  EXPECT_EQ(r->mask.eq(1).sum().item<int64_t>(), 8 * 16 - 2);
  EXPECT_EQ(agg.AggregateOnImage(samples, *mapping, {Click{16, 0, 1, true}}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(AggregatorTest, ACroppedImagesMaskIsTheRegionsInPlaceAndBackgroundAroundIt) {
  AggregatorOptions o;
  o.rule = AggregationRule::kMajority;
  // A 40x30 image whose 16x8 region at (20, 10) is on an 8x8 grid (rows 2-5): every sample says
  // class 1 everywhere on the grid.
  Result<GridMapping> mapping = MakeGridMapping(40, 30, 8, ImageRegion{20, 10, 16, 8});
  ASSERT_TRUE(mapping.ok());
  const auto samples = torch::ones({4, 8, 8}, torch::kLong);
  Result<Aggregation> r = Make(o).AggregateOnImage(samples, *mapping, {Click{2, 2, 1, true}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->mask.sizes(), torch::IntArrayRef({30, 40}));
  ASSERT_EQ(r->vote_fractions.sizes(), torch::IntArrayRef({2, 30, 40}));
  EXPECT_TRUE(r->mask.slice(0, 10, 18).slice(1, 20, 36).eq(1).all().item<bool>());
  // 16x8 region pixels and the click (outside the region: the annotator's word holds).
  EXPECT_EQ(r->mask.sum().item<int64_t>(), 16 * 8 + 1);
  EXPECT_EQ(r->mask[2][2].item<int64_t>(), 1);
  EXPECT_EQ(r->vote_fractions[0][0][0].item<float>(), 1.0F);
  EXPECT_EQ(r->vote_fractions[1][0][0].item<float>(), 0.0F);
  EXPECT_EQ(r->uncertainty[0][0].item<float>(), 0.0F);
}

TEST(AggregatorTest, ACroppedImageIsCorrectedAtItsClicksAsTheRegionAloneWouldBe) {
  // The 64x32 image of the test below, as the region at (20, 10) of a 100x60 image: the same
  // samples, grid image and clicks (moved with it) give the same mask there, background around.
  Result<GridMapping> alone = MakeGridMapping(64, 32, 32);
  Result<GridMapping> framed = MakeGridMapping(100, 60, 32, ImageRegion{20, 10, 64, 32});
  ASSERT_TRUE(alone.ok() && framed.ok());
  auto grid_image = torch::full({1, 32, 32}, 0.2F);
  grid_image.slice(1, 10, 22).slice(2, 10, 22).fill_(0.8F);
  auto samples = torch::zeros({4, 32, 32}, torch::kLong);
  samples.slice(1, 10, 22).slice(2, 10, 16).fill_(1);
  AggregatorOptions o;
  o.rule = AggregationRule::kMajority;
  Result<Aggregation> plain = Make(o).AggregateOnImage(
      samples, *alone, {Click{25, 15, 1, true}, Click{39, 15, 1, true}}, grid_image);
  Result<Aggregation> cropped = Make(o).AggregateOnImage(
      samples, *framed, {Click{45, 25, 1, true}, Click{59, 25, 1, true}}, grid_image);
  ASSERT_TRUE(plain.ok() && cropped.ok()) << cropped.status().ToString();
  ASSERT_EQ(cropped->mask.sizes(), torch::IntArrayRef({60, 100}));
  EXPECT_GT(plain->mask.sum().item<int64_t>(), 100);  // the correction reached past the clicks
  EXPECT_TRUE(cropped->mask.slice(0, 10, 42).slice(1, 20, 84).equal(plain->mask));
  EXPECT_EQ(cropped->mask.sum().item<int64_t>(), plain->mask.sum().item<int64_t>());
}

TEST(AggregatorTest, AClickTheMaskMissesCorrectsItsRegionAtTheImagesOwnSize) {
  // A 64x32 image on a 32x32 grid (rows 8-23): a bright square at grid rows and columns 10-21,
  // every sample drawing only its left half (columns 10-15).
  Result<GridMapping> mapping = MakeGridMapping(64, 32, 32);
  ASSERT_TRUE(mapping.ok());
  auto grid_image = torch::full({1, 32, 32}, 0.2F);
  grid_image.slice(1, 10, 22).slice(2, 10, 22).fill_(0.8F);
  auto samples = torch::zeros({4, 32, 32}, torch::kLong);
  samples.slice(1, 10, 22).slice(2, 10, 16).fill_(1);
  // The first click in the drawn half, then one in grid cell (19, 15).
  const std::vector<Click> clicks = {Click{25, 15, 1, true}, Click{39, 15, 1, true}};
  AggregatorOptions o;
  o.rule = AggregationRule::kMajority;
  Result<Aggregation> corrected = Make(o).AggregateOnImage(samples, *mapping, clicks, grid_image);
  ASSERT_TRUE(corrected.ok()) << corrected.status().ToString();
  ASSERT_EQ(corrected->mask.sizes(), torch::IntArrayRef({32, 64}));
  // Grid cell (x, y) covers image pixels 2x..2x+1 and 2(y-8)..2(y-8)+1: the missed half's inner
  // cells (columns 16-20, rows 11-20) are corrected, the background around the square is not.
  EXPECT_TRUE(corrected->mask.slice(0, 7, 23).slice(1, 33, 41).eq(1).all().item<bool>());
  EXPECT_EQ(corrected->mask.slice(0, 0, 3).sum().item<int64_t>(), 0);
  EXPECT_EQ(corrected->mask.slice(1, 46, 64).sum().item<int64_t>(), 0);
  o.click_reach = 0;  // off: of the missed half the click holds its own pixel only
  Result<Aggregation> plain = Make(o).AggregateOnImage(samples, *mapping, clicks, grid_image);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->mask.slice(0, 4, 28).slice(1, 33, 44).sum().item<int64_t>(), 1);
  // Without the image nothing is corrected either; a reach beyond 8 is refused.
  o.click_reach = 2;
  Result<Aggregation> blind = Make(o).AggregateOnImage(samples, *mapping, clicks);
  ASSERT_TRUE(blind.ok());
  EXPECT_TRUE(blind->mask.equal(plain->mask));
  o.click_reach = 9;
  EXPECT_FALSE(Aggregator::Create(o).ok());
}

TEST(AggregatorTest, TheMaskSnapsToTheImagesEdgesAtItsOwnSize) {
  // A 64x32 image on a 32x32 grid (2 pixels a cell): bright from column 30 on; every sample draws
  // the object from grid column 16 (pixel 32), two pixels short of the edge.
  Result<GridMapping> mapping = MakeGridMapping(64, 32, 32);
  ASSERT_TRUE(mapping.ok());
  auto image = torch::full({1, 32, 64}, 100.0F);  // any units
  image.slice(2, 30).fill_(900.0F);
  auto samples = torch::zeros({4, 32, 32}, torch::kLong);
  samples.slice(2, 16).fill_(1);
  AggregatorOptions o;
  o.rule = AggregationRule::kMajority;
  o.edge_band = 2;  // 4 pixels
  Result<Aggregation> snapped = Make(o).AggregateOnImage(samples, *mapping, {}, {}, image);
  ASSERT_TRUE(snapped.ok()) << snapped.status().ToString();
  EXPECT_EQ(snapped->mask.slice(1, 0, 30).sum().item<int64_t>(), 0);
  EXPECT_TRUE(snapped->mask.slice(1, 30).eq(1).all().item<bool>());
  // Without the image, or with edge_band 0, the mask is the votes' own.
  Result<Aggregation> plain = Make(o).AggregateOnImage(samples, *mapping);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->mask.slice(1, 0, 32).sum().item<int64_t>(), 0);
  EXPECT_TRUE(plain->mask.slice(1, 32).eq(1).all().item<bool>());
  o.edge_band = 0;
  Result<Aggregation> off = Make(o).AggregateOnImage(samples, *mapping, {}, {}, image);
  ASSERT_TRUE(off.ok());
  EXPECT_TRUE(off->mask.equal(plain->mask));
  // An image of another size is refused, as is a band beyond 4 cells.
  o.edge_band = 1;
  EXPECT_EQ(Make(o)
                .AggregateOnImage(samples, *mapping, {}, {}, torch::zeros({1, 32, 32}))
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  o.edge_band = 4.5;
  EXPECT_FALSE(Aggregator::Create(o).ok());
}

TEST(AggregatorTest, AggregatesABatchOfSampleStacks) {
  AggregatorOptions o;
  o.num_classes = 2;
  torch::Tensor samples = torch::zeros({2, 3, 2, 2}, torch::kUInt8);  // [B, N, H, W]
  samples[1].fill_(1);
  Result<Aggregation> r = Make(o).Aggregate(samples);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mask.sizes(), torch::IntArrayRef({2, 2, 2}));
  EXPECT_EQ(r->vote_fractions.sizes(), torch::IntArrayRef({2, 2, 2, 2}));
  EXPECT_EQ(r->mask[0].sum().item<int64_t>(), 0);
  EXPECT_EQ(r->mask[1].sum().item<int64_t>(), 4);
}

TEST(AggregatorTest, RejectsBadSamplesAndOptions) {
  const Aggregator agg = Make(AggregatorOptions{});
  Result<Aggregation> r = agg.Aggregate(torch::full({2, 3, 3}, 2, torch::kLong));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("class id 2"), std::string::npos);
  r = agg.Aggregate(torch::zeros({2, 3, 3}, torch::kFloat));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("integer"), std::string::npos);
  r = agg.Aggregate(torch::zeros({3, 3}, torch::kLong));
  EXPECT_FALSE(r.ok());

  AggregatorOptions bad;
  bad.threshold = 0.0;
  Result<Aggregator> a = Aggregator::Create(bad);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("threshold"), std::string::npos);
  bad = AggregatorOptions{};
  bad.num_classes = 3;
  bad.class_thresholds = {0.5, 0.5};
  EXPECT_FALSE(Aggregator::Create(bad).ok());
}

}  // namespace
}  // namespace clickdiff::model
