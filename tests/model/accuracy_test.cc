// The model's accuracy test: train a small model with the default architecture on generated
// binary-organ images from ONE click per object and check Dice on unseen generated images, once
// per seed (weights, batches and sampling), so a pass is not one lucky draw. About a minute per
// seed on 2 cores; its own binary and ctest label "accuracy" (ops/test.sh -LE accuracy skips it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <utility>
#include <vector>

#include "model/aggregator.h"
#include "model/diffusion.h"
#include "model/segmenter.h"
#include "model/synthetic.h"
#include "model/trainer.h"
#include "model/training_example.h"

namespace clickdiff::model {
namespace {

double Dice(const torch::Tensor& pred, const torch::Tensor& truth) {
  const double inter = pred.logical_and(truth).sum().item<double>();
  const double total = pred.sum().item<double>() + truth.sum().item<double>();
  return total == 0 ? 1.0 : 2 * inter / total;
}

class SegmenterAccuracyTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SegmenterAccuracyTest, GaussianX0LearnsBinaryOrgansFromOneClickPerObject) {
  torch::set_num_threads(1);
  const uint64_t seed = GetParam();
  SegmenterOptions options;  // product defaults
  options.method = Method::kGaussianX0;
  options.seed = seed;
  auto segmenter = Segmenter::Create(options, torch::kCPU);
  ASSERT_TRUE(segmenter.ok()) << segmenter.status().ToString();

  SyntheticOptions synth;  // 64x64, background + one organ
  std::vector<TrainingExample> train;
  for (const auto& s : GenerateSynthetic(synth, 300, 101)) {
    auto ex = MakeClickExample(s.image, s.clicks, 2);
    ASSERT_TRUE(ex.ok());
    train.push_back(*ex);
  }
  TrainerOptions trainer_options;
  trainer_options.max_steps = 300;
  trainer_options.seed = seed;
  Trainer trainer(&*segmenter, trainer_options);
  auto progress = trainer.Run(train, {});
  ASSERT_TRUE(progress.ok()) << progress.status().ToString();

  const auto test = GenerateSynthetic(synth, 16, 303);
  std::vector<torch::Tensor> images;
  for (const auto& s : test) images.push_back(s.image);
  auto samples = segmenter->Sample(torch::stack(images), 8, 0, 7 + seed);
  ASSERT_TRUE(samples.ok()) << samples.status().ToString();

  AggregatorOptions aggregation;  // smoothed vote density, as the product aggregates
  aggregation.rule = AggregationRule::kDensity;
  aggregation.density_sigma = 2.0;
  aggregation.density_relative_threshold = 0.5;
  auto aggregator = Aggregator::Create(aggregation);
  ASSERT_TRUE(aggregator.ok());
  double dice = 0;
  for (size_t i = 0; i < test.size(); ++i) {
    auto result = aggregator->Aggregate((*samples)[static_cast<int64_t>(i)]);
    ASSERT_TRUE(result.ok());
    dice += Dice(result->mask > 0, test[i].mask > 0) / static_cast<double>(test.size());
  }
  // An untrained or collapsed model scores < 0.3 here; the best disk around the click ~0.62.
  // Seed 2 ends at 0.852 with OpenBLAS's Haswell kernels and at 0.686 with the kernels it picks
  // itself on the same CPU (the seed dependence docs/experiments.md lists): the bar is what every
  // seed clears on either, until the training stops depending on the seed (issue 12).
  EXPECT_GT(dice, 0.65) << "mean test Dice " << dice << ", seed " << seed;
  RecordProperty("dice", std::to_string(dice));
}

// Images of two equal discs whose mask labels one of them, drawn at random: only a click says
// which. Returns the images [N,1,R,R], the labelled disc [N,R,R] and the other disc [N,R,R].
struct TwoDiscs {
  torch::Tensor images, labelled, other;
  std::vector<Click> centres;  // of the labelled disc
};

TwoDiscs MakeTwoDiscs(int64_t count, int64_t r, uint64_t seed) {
  at::Generator gen = MakeGenerator(seed);
  const auto ys = torch::arange(r).view({r, 1}).expand({r, r});
  const auto xs = torch::arange(r).view({1, r}).expand({r, r});
  TwoDiscs d{torch::zeros({count, 1, r, r}),
             torch::zeros({count, r, r}, torch::kLong),
             torch::zeros({count, r, r}, torch::kBool),
             {}};
  const double radius = static_cast<double>(r) / 6;
  for (int64_t i = 0; i < count; ++i) {
    int64_t x[2], y[2];
    do {
      for (int j = 0; j < 2; ++j) {
        x[j] = 6 + torch::randint(r - 12, {1}, gen).item<int64_t>();
        y[j] = 6 + torch::randint(r - 12, {1}, gen).item<int64_t>();
      }
    } while (std::hypot(x[0] - x[1], y[0] - y[1]) < 2.5 * radius + 2);
    torch::Tensor disc[2];
    for (int j = 0; j < 2; ++j) {
      disc[j] = ((xs - x[j]).square() + (ys - y[j]).square()).to(torch::kFloat) <= radius * radius;
    }
    d.images[i][0] = 0.2 + 0.6 * disc[0].logical_or(disc[1]).to(torch::kFloat) +
                     0.05 * torch::randn({r, r}, gen);
    d.labelled[i] = disc[0].to(torch::kLong);
    d.other[i] = disc[1];
    d.centres.push_back(Click{x[0], y[0], 1, true});
  }
  return d;
}

// A seed's two-disc sets at a 32 grid: 64 training images and 16 test images (one thread, so
// the figures repeat).
std::pair<TwoDiscs, TwoDiscs> DiscSets(uint64_t seed) {
  torch::set_num_threads(1);
  return {MakeTwoDiscs(64, 32, 100 + seed), MakeTwoDiscs(16, 32, 200 + seed)};
}

// Trains a click_input model (the model library's defaults, d3pm beta_end 0.02, at the discs' 32
// grid; `simulated`: model.simulated_clicks) on `examples` for 300 steps and returns its mean Dice
// on `test` from one click at each labelled disc's centre (8 samples, half the votes).
double TrainAndClickDiscs(const std::vector<TrainingExample>& examples, const TwoDiscs& test,
                          double simulated, uint64_t seed) {
  SegmenterOptions options;
  options.resolution = test.images.size(-1);
  options.unet.levels = 3;
  options.click_input = true;
  options.simulated_clicks = simulated;
  options.seed = seed;
  auto segmenter = Segmenter::Create(options, torch::kCPU);
  EXPECT_TRUE(segmenter.ok()) << segmenter.status().ToString();
  if (!segmenter.ok()) return 0;
  TrainerOptions trainer_options;
  trainer_options.max_steps = 300;
  trainer_options.seed = seed;
  Trainer trainer(&*segmenter, trainer_options);
  EXPECT_TRUE(trainer.Run(examples, {}).ok());
  std::vector<std::vector<Click>> clicks;
  for (const Click& c : test.centres) clicks.push_back({c});
  auto samples = segmenter->Sample(test.images, 8, 20, 7 + seed, 1024, clicks);
  EXPECT_TRUE(samples.ok()) << samples.status().ToString();
  if (!samples.ok()) return 0;
  double dice = 0;
  for (int64_t i = 0; i < test.images.size(0); ++i) {
    const auto vote = (*samples)[i].eq(1).to(torch::kFloat).mean(0) >= 0.5;
    dice += Dice(vote, test.labelled[i] > 0) / static_cast<double>(test.images.size(0));
  }
  return dice;
}

// Dense masks teach a click_input model what a click means only when they are shown clicks
// simulated on them (model.simulated_clicks): trained on two-disc images whose mask labels one
// disc, a click then picks that disc. Without them the network never sees a click in training and
// cannot tell the discs apart.
TEST_P(SegmenterAccuracyTest, ClicksSimulatedOnDenseMasksTeachTheClickToPickItsObject) {
  const uint64_t seed = GetParam();
  const auto [train, test] = DiscSets(seed);
  std::vector<TrainingExample> examples;
  for (int64_t i = 0; i < train.images.size(0); ++i) {
    examples.push_back(MakeDenseExample(train.images[i], train.labelled[i], 2).value());
  }
  const double with = TrainAndClickDiscs(examples, test, 1.0, seed),
               without = TrainAndClickDiscs(examples, test, 0.0, seed);
  // Both discs or neither gives at most ~0.67 against the clicked one.
  EXPECT_GT(with, 0.8) << "seed " << seed;
  EXPECT_GT(with, without + 0.15) << "seed " << seed;
  RecordProperty("dice_simulated", std::to_string(with));
  RecordProperty("dice_without", std::to_string(without));
}

// Scribbles are partial labels: trained on two-disc images whose scribbles mark one chord of the
// labelled disc (about a tenth of its pixels) as object and a ring around it, a chord of the other
// disc, the top row and three clear rows as background, a click then gets most of the labelled
// disc, not just a stroke.
TEST_P(SegmenterAccuracyTest, ScribblesTeachTheWholeObjectFromAStrokeInsideIt) {
  const uint64_t seed = GetParam();
  const auto [train, test] = DiscSets(seed);
  const int64_t r = train.images.size(-1);
  std::vector<TrainingExample> examples;
  at::Generator gen = MakeGenerator(300 + seed);
  double marked = 0, area = 0;
  for (int64_t i = 0; i < train.images.size(0); ++i) {
    // Object: a chord of the labelled disc at a random row (an annotator strokes anywhere in a
    // structure). Background: a ring 2-3 px outside it, a chord of the other disc, the top row
    // and three rows clear of both discs.
    auto scribble = torch::full({r, r}, kUnknownClass, torch::kLong);
    const Click& c = train.centres[static_cast<size_t>(i)];
    const auto distance = (torch::arange(r).view({r, 1}) - c.y)
                              .square()
                              .add((torch::arange(r).view({1, r}) - c.x).square())
                              .to(torch::kFloat)
                              .sqrt();
    const double radius = static_cast<double>(r) / 6;
    scribble.masked_fill_(distance.ge(radius + 2).logical_and(distance.lt(radius + 3)), 0);
    for (const auto& [disc, label] : {std::pair{train.labelled[i] > 0, 1}, {train.other[i], 0}}) {
      const auto rows = disc.any(1).nonzero().squeeze(1);
      const int64_t row =
          rows[torch::randint(rows.size(0), {1}, gen).item<int64_t>()].item<int64_t>();
      scribble[row].masked_fill_(disc[row], label);
    }
    scribble[0].fill_(0);
    const auto clear = train.labelled[i].gt(0).logical_or(train.other[i]).any(1).logical_not();
    const auto clear_rows = clear.nonzero().squeeze(1);
    for (int k = 0; k < 3; ++k) {
      scribble[clear_rows[torch::randint(clear_rows.size(0), {1}, gen).item<int64_t>()]
                   .item<int64_t>()]
          .fill_(0);
    }
    auto ex = MakePartialExample(train.images[i], scribble, {}, 2);
    ASSERT_TRUE(ex.ok()) << ex.status().ToString();
    marked += ex->target.eq(1).sum().item<double>();
    area += train.labelled[i].sum().item<double>();
    examples.push_back(std::move(ex).value());
  }
  ASSERT_LT(marked / area, 0.15);  // the strokes mark a small part of each object
  const double dice = TrainAndClickDiscs(examples, test, 1.0, seed);
  // The strokes alone score ~0.2; seeds 1-3 score 0.51-0.56 (masks a little small: the unmarked
  // pixels are a weak background prior, model/losses.h); dense masks give > 0.8 (the test above).
  EXPECT_GT(dice, 0.45) << "seed " << seed;
  RecordProperty("dice_scribbles", std::to_string(dice));
}

INSTANTIATE_TEST_SUITE_P(Seeds, SegmenterAccuracyTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace clickdiff::model
