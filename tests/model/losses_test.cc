// The supervision losses of model/losses.h against hand-computed cases.
#include "model/losses.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/diffusion.h"

namespace clickdiff::model {
namespace {

// Logits [1,2,1,3] whose softmax gives class-1 probabilities 0.5, 0.8, 0.1 on three pixels.
torch::Tensor ThreePixelLogits() {
  const auto p1 = torch::tensor({0.5f, 0.8f, 0.1f});
  const auto logit = torch::log(p1 / (1 - p1));
  return torch::stack({torch::zeros_like(logit), logit}).view({1, 2, 1, 3});
}

TEST(LossesTest, PartialCrossEntropyScoresLabelledPixelsOnly) {
  const auto logits = ThreePixelLogits();
  const auto targets = torch::tensor({1, 0, 0}, torch::kLong).view({1, 1, 3});
  const auto labelled = torch::tensor({true, true, false}).view({1, 1, 3});
  const auto weights = torch::ones({1});
  // (-log 0.5 - log 0.2) / 2 labelled pixels; the third pixel (p = 0.1) does not count.
  const double expected = (-std::log(0.5) - std::log(0.2)) / 2;
  EXPECT_NEAR(PartialCrossEntropy(logits, targets, labelled, weights).item<double>(), expected,
              1e-5);
  // Whatever the network says at an unlabelled pixel leaves the loss alone.
  auto changed = logits.clone();
  changed.index_put_({0, 1, 0, 2}, 25.0);
  EXPECT_NEAR(PartialCrossEntropy(changed, targets, labelled, weights).item<double>(), expected,
              1e-5);
  // Nothing labelled: 0, not NaN.
  EXPECT_EQ(
      PartialCrossEntropy(logits, targets, torch::zeros_like(labelled), weights).item<float>(),
      0.0f);
}

TEST(LossesTest, PartialCrossEntropyWeighsEachExample) {
  const auto logits = torch::cat({ThreePixelLogits(), ThreePixelLogits()});
  const auto targets = torch::ones({2, 1, 3}, torch::kLong);
  const auto labelled = torch::tensor({true, false, false}).view({1, 1, 3}).expand({2, 1, 3});
  // Two labelled pixels (p = 0.5 each), weights 1 and 0: -log 0.5 / 2.
  EXPECT_NEAR(
      PartialCrossEntropy(logits, targets, labelled, torch::tensor({1.0f, 0.0f})).item<double>(),
      std::log(2.0) / 2, 1e-5);
}

TEST(LossesTest, FocalWeightsClicksAlphaUnknownPixelsTheRestAndDenseMasksTheirOwnWeight) {
  LossOptions options;
  options.focal_alpha = 0.9;
  options.dense_weight = 0.25;
  // Four examples of four pixels: a click map (a positive click, a negative click, two unknown
  // pixels), the same click map whose last pixel a served mask labels object
  // (model::LabelUnclicked: it weighs as unknown, not as a click), a dense mask, and a partial
  // label map (scribbles) labelling its first two pixels.
  const auto targets =
      torch::tensor({1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0}, torch::kLong);
  const auto known = torch::tensor({true, true, false, false}).view({1, 1, 4}).expand({4, 1, 4});
  const auto dense = torch::tensor({false, false, true, false});
  const auto partial = torch::tensor({false, false, false, true});
  const auto w = PixelWeights(targets.view({4, 1, 4}), known, dense, partial, options).view({4, 4});
  EXPECT_TRUE(torch::allclose(w[0], torch::tensor({0.9f, 0.9f, 0.1f, 0.1f})));
  EXPECT_TRUE(torch::allclose(w[1], torch::tensor({0.9f, 0.9f, 0.1f, 0.1f})));
  EXPECT_TRUE(torch::allclose(w[2], torch::full({4}, 0.25f)));
  // Weighed as the click map, scaled to the dense mask's total (4 x 0.25 = 1, against 2).
  EXPECT_TRUE(torch::allclose(w[3], torch::tensor({0.45f, 0.45f, 0.05f, 0.05f})));
  // Focusing: dense and partial label maps take dense_gamma, click maps focal_gamma.
  const auto gammas = FocalGammas(dense.logical_or(partial), options);
  EXPECT_TRUE(torch::allclose(gammas, torch::tensor({2.0f, 2.0f, 0.0f, 0.0f})));
}

TEST(LossesTest, MumfordShahIsTheVarianceOfEachRegionAroundItsMean) {
  // Hard regions: pixels 0,1 class 0 (intensities 0.2, 0.4), pixels 2,3 class 1 (0.9, 0.9).
  const auto image = torch::tensor({0.2f, 0.4f, 0.9f, 0.9f}).view({1, 1, 1, 4});
  const auto class1 = torch::tensor({0.0f, 0.0f, 1.0f, 1.0f});
  const auto probs = torch::stack({1 - class1, class1}).view({1, 2, 1, 4});
  // Region 0: mean 0.3, squared deviations 0.01 + 0.01; region 1: none. Mean over 4 pixels.
  EXPECT_NEAR(MumfordShahLoss(probs, image).item<double>(), 0.02 / 4, 1e-6);
  // A split that cuts across intensities costs more.
  const auto mixed = torch::tensor({0.0f, 1.0f, 0.0f, 1.0f});
  const auto worse = torch::stack({1 - mixed, mixed}).view({1, 2, 1, 4});
  EXPECT_GT(MumfordShahLoss(worse, image).item<double>(), 0.02 / 4 + 0.05);
}

TEST(LossesTest, TotalVariationCountsEdgesOfThePrediction) {
  const auto class1 = torch::tensor({0.0f, 0.0f, 1.0f, 1.0f});
  const auto probs = torch::stack({1 - class1, class1}).view({1, 2, 1, 4});
  // One horizontal step of height 1 in each of the 2 class maps, over 4 pixels.
  EXPECT_NEAR(TotalVariation(probs).item<double>(), 2.0 / 4, 1e-6);
  EXPECT_NEAR(TotalVariation(torch::full({1, 2, 3, 3}, 0.5f)).item<double>(), 0.0, 1e-7);
}

// A batch of 3 images, 2 classes, 8x8: soft predictions and images with structure.
struct CvBatch {
  torch::Tensor probs, image, present;
};
CvBatch RandomCvBatch() {
  torch::manual_seed(3);
  CvBatch b;
  b.probs = torch::softmax(torch::randn({3, 2, 8, 8}), 1);
  b.image = torch::rand({3, 1, 8, 8});
  b.present = torch::ones({3, 2}, torch::kBool);
  return b;
}

TEST(LossesTest, ContrastiveVarianceIgnoresIntensityShiftsAndScales) {
  const CvBatch b = RandomCvBatch();
  auto gen = MakeGenerator(7);
  const double base =
      ContrastiveVarianceLoss(b.probs, b.image, b.present, 0.07, gen).item<double>();
  // The variance maps (I - c_k)^2 Y_k do not move when every intensity shifts (c_k shifts too),
  // and cosine similarity ignores their scale: same loss under the same draws.
  gen = MakeGenerator(7);
  EXPECT_NEAR(ContrastiveVarianceLoss(b.probs, b.image + 0.3, b.present, 0.07, gen).item<double>(),
              base, 1e-4);
  gen = MakeGenerator(7);
  EXPECT_NEAR(ContrastiveVarianceLoss(b.probs, b.image * 2.5, b.present, 0.07, gen).item<double>(),
              base, 1e-4);
  EXPECT_GT(base, 0.0);
}

TEST(LossesTest, ContrastiveVarianceMatchesTheFormulaOnTwoImages) {
  // Two images, two classes: anchor (n, k) has the single positive (1-n, k) and the single
  // negative (1-n, 1-k), so each term is log(1 + exp((cos_neg - cos_pos) / tau)).
  const CvBatch full = RandomCvBatch();
  const auto probs = full.probs.slice(0, 0, 2);
  const auto image = full.image.slice(0, 0, 2);
  const auto z =
      torch::nn::functional::normalize(VarianceMaps(probs, image).reshape({4, -1}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto cos = torch::matmul(z, z.t());
  const double tau = 0.5;
  double expected = 0;
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 2; ++k) {
      const int a = n * 2 + k, pos = (1 - n) * 2 + k, neg = (1 - n) * 2 + (1 - k);
      expected +=
          std::log1p(std::exp((cos[a][neg].item<double>() - cos[a][pos].item<double>()) / tau));
    }
  }
  auto gen = MakeGenerator(1);
  EXPECT_NEAR(ContrastiveVarianceLoss(probs, image, torch::ones({2, 2}, torch::kBool), tau, gen)
                  .item<double>(),
              expected / 4, 1e-5);
  // A class held by one image only has no positive: no anchor, loss 0.
  const auto alone = torch::tensor({true, true, true, false}).view({2, 2});
  gen = MakeGenerator(1);
  const auto only_background = ContrastiveVarianceLoss(probs, image, alone, tau, gen);
  EXPECT_TRUE(std::isfinite(only_background.item<double>()));
}

TEST(LossesTest, GradientsOfEveryTermReachThePrediction) {
  const CvBatch b = RandomCvBatch();
  auto logits = torch::log(b.probs).clone().requires_grad_(true);
  const auto probs = torch::softmax(logits, 1);
  auto gen = MakeGenerator(2);
  const auto loss = MumfordShahLoss(probs, b.image) + TotalVariation(probs) +
                    ContrastiveVarianceLoss(probs, b.image, b.present, 0.07, gen);
  loss.backward();
  ASSERT_TRUE(logits.grad().defined());
  EXPECT_GT(logits.grad().abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::isfinite(logits.grad()).all().item<bool>());
}

}  // namespace
}  // namespace clickdiff::model
