// The model's accuracy test: train a small model with the default architecture on generated
// binary-organ images from ONE click per object and check Dice on unseen generated images, once
// per seed (weights, batches and sampling), so a pass is not one lucky draw. About a minute per
// seed on 2 cores; its own binary and ctest label "accuracy" (ops/test.sh -LE accuracy skips it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "model/aggregator.h"
#include "model/segmenter.h"
#include "model/synthetic.h"
#include "model/trainer.h"

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

INSTANTIATE_TEST_SUITE_P(Seeds, SegmenterAccuracyTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace clickdiff::model
