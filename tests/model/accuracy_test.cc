// The model's accuracy test: train a small model with the default architecture on generated
// binary-organ images from ONE click per object and check Dice on unseen generated images, once
// per seed (weights, batches and sampling), so a pass is not one lucky draw. About a minute per
// seed on 2 cores; its own binary and ctest label "accuracy" (ops/test.sh -LE accuracy skips it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
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

// Dense masks teach a click_input model what a click means only when they are shown clicks
// simulated on them (model.simulated_clicks): trained on two-disc images whose mask labels one
// disc, a click then picks that disc. Without them the network never sees a click in training and
// cannot tell the discs apart.
TEST_P(SegmenterAccuracyTest, ClicksSimulatedOnDenseMasksTeachTheClickToPickItsObject) {
  torch::set_num_threads(1);
  const uint64_t seed = GetParam();
  const int64_t r = 32;
  const TwoDiscs train = MakeTwoDiscs(64, r, 100 + seed);
  const TwoDiscs test = MakeTwoDiscs(16, r, 200 + seed);
  auto picked = [&](double simulated) {
    SegmenterOptions options;  // the model library's defaults (d3pm beta_end 0.02) at a 32 grid
    options.resolution = r;
    options.unet.levels = 3;
    options.click_input = true;
    options.simulated_clicks = simulated;
    options.seed = seed;
    auto segmenter = Segmenter::Create(options, torch::kCPU);
    EXPECT_TRUE(segmenter.ok()) << segmenter.status().ToString();
    std::vector<TrainingExample> examples;
    for (int64_t i = 0; i < train.images.size(0); ++i) {
      examples.push_back(MakeDenseExample(train.images[i], train.labelled[i], 2).value());
    }
    TrainerOptions trainer_options;
    trainer_options.max_steps = 300;
    trainer_options.seed = seed;
    Trainer trainer(&*segmenter, trainer_options);
    EXPECT_TRUE(trainer.Run(examples, {}).ok());
    std::vector<std::vector<Click>> clicks;
    for (const Click& c : test.centres) clicks.push_back({c});
    auto samples = segmenter->Sample(test.images, 8, 20, 7 + seed, 1024, clicks);
    EXPECT_TRUE(samples.ok()) << samples.status().ToString();
    double dice = 0;
    for (int64_t i = 0; i < test.images.size(0); ++i) {
      const auto vote = (*samples)[i].eq(1).to(torch::kFloat).mean(0) >= 0.5;
      dice += Dice(vote, test.labelled[i] > 0) / static_cast<double>(test.images.size(0));
    }
    return dice;
  };
  const double with = picked(1.0), without = picked(0.0);
  // Both discs or neither gives at most ~0.67 against the clicked one.
  EXPECT_GT(with, 0.8) << "seed " << seed;
  EXPECT_GT(with, without + 0.15) << "seed " << seed;
  RecordProperty("dice_simulated", std::to_string(with));
  RecordProperty("dice_without", std::to_string(without));
}

INSTANTIATE_TEST_SUITE_P(Seeds, SegmenterAccuracyTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace clickdiff::model
