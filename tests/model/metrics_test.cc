#include "model/metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace clickdiff::model {
namespace {

torch::Tensor Grid(std::vector<int64_t> values, int64_t h, int64_t w) {
  return torch::tensor(values, torch::kLong).view({h, w});
}

MetricsOptions Options(int64_t k) {
  MetricsOptions o;
  o.num_classes = k;
  return o;
}

TEST(MetricsTest, ScoresOverlappingSquaresAsComputedByHand) {
  // truth class 1 = 2x2 square, prediction = 2x3 (one extra column on the right).
  // TP = 4, FP = 2, FN = 0: Dice = 8/10, IoU = 4/6, precision = 4/6, recall = 1.
  // Every pixel of both sets is a boundary pixel (2 rows thick). Distances pred->truth boundary:
  // {0,0,0,0,1,1}, p95 at position 0.95*5 = 4.75 between 1 and 1 -> 1; truth->pred all 0.
  // HD95 = max(1, 0) = 1.
  const torch::Tensor truth = Grid({0, 0, 0, 0,  //
                                    0, 1, 1, 0,  //
                                    0, 1, 1, 0,  //
                                    0, 0, 0, 0},
                                   4, 4);
  const torch::Tensor pred = Grid({0, 0, 0, 0,  //
                                   0, 1, 1, 1,  //
                                   0, 1, 1, 1,  //
                                   0, 0, 0, 0},
                                  4, 4);
  Result<ImageScores> s = ScoreImage(pred, truth, Options(2));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->per_class.size(), 1u);
  const ClassScores& c = s->per_class[0];
  EXPECT_EQ(c.class_id, 1);
  EXPECT_DOUBLE_EQ(c.dice, 0.8);
  EXPECT_DOUBLE_EQ(c.iou, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(c.precision, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(c.recall, 1.0);
  EXPECT_DOUBLE_EQ(c.hd95, 1.0);
  EXPECT_EQ(c.truth_pixels, 4);
  EXPECT_EQ(c.pred_pixels, 6);
  EXPECT_DOUBLE_EQ(s->mean.dice, 0.8);
}

TEST(MetricsTest, Hd95InterpolatesThePercentileLikeNumpy) {
  // 1x10 image, truth = {x=0}, prediction = {x=0, x=9}.
  // pred->truth distances {0, 9}: p95 at position 0.95 -> 0 + 0.95 * 9 = 8.55; truth->pred {0}.
  // HD95 = 8.55. Dice = 2*1 / (2*1 + 1 + 0) = 2/3.
  std::vector<int64_t> t(10, 0), p(10, 0);
  t[0] = 1;
  p[0] = 1;
  p[9] = 1;
  Result<ImageScores> s = ScoreImage(Grid(p, 1, 10), Grid(t, 1, 10), Options(2));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_NEAR(s->per_class[0].hd95, 8.55, 1e-12);
  EXPECT_DOUBLE_EQ(s->per_class[0].dice, 2.0 / 3.0);
}

TEST(MetricsTest, BothEmptyIsPerfectAndOneEmptyIsWorstCase) {
  // 3x4 image. Class 1 absent from both; class 2 only in the truth (one pixel).
  const torch::Tensor truth = Grid({0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}, 3, 4);
  const torch::Tensor pred = torch::zeros({3, 4}, torch::kLong);
  MetricsOptions options = Options(3);
  options.absent_class = AbsentClassPolicy::kInclude;
  Result<ImageScores> s = ScoreImage(pred, truth, options);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const ClassScores& both_empty = s->per_class[0];
  EXPECT_DOUBLE_EQ(both_empty.dice, 1.0);
  EXPECT_DOUBLE_EQ(both_empty.iou, 1.0);
  EXPECT_DOUBLE_EQ(both_empty.precision, 1.0);
  EXPECT_DOUBLE_EQ(both_empty.recall, 1.0);
  EXPECT_DOUBLE_EQ(both_empty.hd95, 0.0);
  const ClassScores& missed = s->per_class[1];
  EXPECT_DOUBLE_EQ(missed.dice, 0.0);
  EXPECT_DOUBLE_EQ(missed.iou, 0.0);
  EXPECT_DOUBLE_EQ(missed.precision, 0.0);
  EXPECT_DOUBLE_EQ(missed.recall, 0.0);
  EXPECT_DOUBLE_EQ(missed.hd95, 5.0);  // diagonal sqrt(3^2 + 4^2)

  options.hd95_empty = Hd95EmptyPolicy::kNaN;
  s = ScoreImage(pred, truth, options);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(std::isnan(s->per_class[1].hd95));
  EXPECT_EQ(s->per_class[1].hd95_undefined, 1);
  EXPECT_DOUBLE_EQ(s->mean.hd95, 0.0);  // NaN left out of the mean: only class 1's 0 remains
}

TEST(MetricsTest, ScoresEachClassAndTheirMean) {
  // truth      pred
  // 1 1 2 2    1 1 1 2
  // 1 1 2 2    1 1 1 2
  // class 1: TP 4, FP 2 -> Dice 0.8, IoU 2/3, precision 2/3, recall 1, HD95 1 (as above).
  // class 2: TP 2, FN 2 -> Dice 4/6, IoU 1/2, precision 1, recall 1/2;
  //   truth->pred distances {1,0,1,0} -> p95 at 2.85 between 1 and 1 = 1; HD95 1.
  const torch::Tensor truth = Grid({1, 1, 2, 2, 1, 1, 2, 2}, 2, 4);
  const torch::Tensor pred = Grid({1, 1, 1, 2, 1, 1, 1, 2}, 2, 4);
  Result<ImageScores> s = ScoreImage(pred, truth, Options(3));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->per_class.size(), 2u);
  EXPECT_DOUBLE_EQ(s->per_class[1].dice, 4.0 / 6.0);
  EXPECT_DOUBLE_EQ(s->per_class[1].iou, 0.5);
  EXPECT_DOUBLE_EQ(s->per_class[1].precision, 1.0);
  EXPECT_DOUBLE_EQ(s->per_class[1].recall, 0.5);
  EXPECT_DOUBLE_EQ(s->per_class[1].hd95, 1.0);
  EXPECT_DOUBLE_EQ(s->mean.dice, (0.8 + 4.0 / 6.0) / 2);
  EXPECT_DOUBLE_EQ(s->mean.iou, (4.0 / 6.0 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(s->mean.hd95, 1.0);
}

TEST(MetricsTest, BackgroundIsScoredOnlyWhenAsked) {
  const torch::Tensor truth = Grid({1, 1, 2, 2, 1, 1, 2, 2}, 2, 4);
  MetricsOptions options = Options(3);
  options.include_background = true;
  Result<ImageScores> s = ScoreImage(truth, truth, options);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->per_class.size(), 3u);
  EXPECT_EQ(s->per_class[0].class_id, 0);
  EXPECT_EQ(s->per_class[0].images, 0);  // background absent from both: skipped by default
  EXPECT_DOUBLE_EQ(s->mean.dice, 1.0);
}

// Brute-force HD95 with the documented definition, to check the distance transform.
double BruteForceHd95(const std::vector<uint8_t>& p, const std::vector<uint8_t>& t, int h, int w) {
  auto boundary = [&](const std::vector<uint8_t>& m) {
    std::vector<std::pair<int, int>> b;
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        if (!m[y * w + x]) continue;
        bool edge = y == 0 || x == 0 || y == h - 1 || x == w - 1 || !m[(y - 1) * w + x] ||
                    !m[(y + 1) * w + x] || !m[y * w + x - 1] || !m[y * w + x + 1];
        if (edge) b.emplace_back(y, x);
      }
    }
    return b;
  };
  auto p95 = [](std::vector<double> d) {
    std::sort(d.begin(), d.end());
    double pos = 0.95 * (d.size() - 1);
    size_t lo = static_cast<size_t>(pos);
    size_t hi = std::min(lo + 1, d.size() - 1);
    return d[lo] + (pos - lo) * (d[hi] - d[lo]);
  };
  auto directed = [&](const auto& a, const auto& b) {
    std::vector<double> d;
    for (auto [ay, ax] : a) {
      double best = 1e18;
      for (auto [by, bx] : b) best = std::min(best, std::hypot(ay - by, ax - bx));
      d.push_back(best);
    }
    return p95(d);
  };
  auto bp = boundary(p), bt = boundary(t);
  return std::max(directed(bp, bt), directed(bt, bp));
}

TEST(MetricsTest, Hd95MatchesBruteForceOnRandomMasks) {
  torch::manual_seed(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int h = 13 + trial % 5, w = 17 + trial % 3;
    torch::Tensor p = (torch::rand({h, w}) < 0.3).to(torch::kLong);
    torch::Tensor t = (torch::rand({h, w}) < 0.2).to(torch::kLong);
    p[0][0] = 1;  // never empty
    t[h - 1][w - 1] = 1;
    std::vector<uint8_t> pv(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + h * w);
    std::vector<uint8_t> tv(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + h * w);
    EXPECT_NEAR(Hd95(p, t), BruteForceHd95(pv, tv, h, w), 1e-9) << "trial " << trial;
  }
}

TEST(MetricsTest, AggregatesMeansOverImagesSkippingClassesAbsentFromBoth) {
  MetricsAccumulator acc(Options(3));
  // Image A (as in ScoresEachClassAndTheirMean): class 1 Dice 0.8, class 2 Dice 2/3.
  ASSERT_TRUE(
      acc.Add(Grid({1, 1, 1, 2, 1, 1, 1, 2}, 2, 4), Grid({1, 1, 2, 2, 1, 1, 2, 2}, 2, 4)).ok());
  // Image B: all class 1 in both -> class 1 Dice 1; class 2 absent from both -> skipped.
  ASSERT_TRUE(
      acc.Add(Grid(std::vector<int64_t>(8, 1), 2, 4), Grid(std::vector<int64_t>(8, 1), 2, 4)).ok());
  // Image C: class 2 predicted where the truth has none -> counted, Dice 0 (false positive).
  ASSERT_TRUE(
      acc.Add(Grid({1, 1, 1, 1, 1, 1, 1, 2}, 2, 4), Grid(std::vector<int64_t>(8, 1), 2, 4)).ok());
  DatasetScores d = acc.Finish();
  EXPECT_EQ(d.num_images, 3);
  ASSERT_EQ(d.per_class.size(), 2u);
  // class 1: Dice A 0.8, B 1, C 2*7/(14+1) = 14/15.
  EXPECT_EQ(d.per_class[0].images, 3);
  EXPECT_NEAR(d.per_class[0].dice, (0.8 + 1.0 + 14.0 / 15.0) / 3, 1e-12);
  // class 2: A 2/3 and C 0; B skipped.
  EXPECT_EQ(d.per_class[1].images, 2);
  EXPECT_NEAR(d.per_class[1].dice, (2.0 / 3.0 + 0.0) / 2, 1e-12);
  EXPECT_NEAR(d.mean.dice, (d.per_class[0].dice + d.per_class[1].dice) / 2, 1e-12);
}

TEST(MetricsTest, RejectsMismatchedShapesAndUnknownIds) {
  const torch::Tensor a = torch::zeros({2, 3}, torch::kLong);
  Result<ImageScores> s = ScoreImage(a, torch::zeros({3, 2}, torch::kLong), Options(2));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("shape"), std::string::npos);
  s = ScoreImage(a, torch::full({2, 3}, 4, torch::kLong), Options(3));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("class id 4"), std::string::npos);
  s = ScoreImage(a.to(torch::kFloat), a, Options(2));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace clickdiff::model
