// Segmenter, Trainer and CheckpointStore: shapes, determinism, gradients, checkpoints, errors.
#include "model/segmenter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "model/checkpoint_store.h"
#include "model/click_guidance.h"
#include "model/synthetic.h"
#include "model/trainer.h"

namespace clickdiff::model {
namespace {

SegmenterOptions SmallOptions(Method method) {
  SegmenterOptions o;
  o.method = method;
  o.num_classes = 3;
  o.resolution = 16;
  o.unet.levels = 3;
  o.unet.base_width = 8;
  o.unet.encoder_width = 8;
  o.unet.time_embedding_dim = 16;
  o.d3pm.num_timesteps = 10;
  o.gaussian.latent_dim = 8;
  o.seed = 3;
  return o;
}

// Generated 16x16 images with two organ classes and one click per organ.
std::vector<SyntheticSample> Shapes(int64_t count, uint64_t seed = 5) {
  SyntheticOptions synth;
  synth.height = synth.width = 16;
  synth.num_classes = 3;
  return GenerateSynthetic(synth, count, seed);
}

std::vector<TrainingExample> SmallBatch(int64_t count, uint64_t seed = 5) {
  std::vector<TrainingExample> batch;
  for (const auto& s : Shapes(count, seed)) {
    auto ex = MakeClickExample(s.image, s.clicks, 3);
    EXPECT_TRUE(ex.ok()) << ex.status().ToString();
    batch.push_back(*ex);
  }
  return batch;
}

torch::Tensor Images(int64_t count) {
  std::vector<torch::Tensor> images;
  for (const auto& ex : SmallBatch(count)) images.push_back(ex.image);
  return torch::stack(images);
}

TrainerOptions Budget(int64_t steps, int64_t batch_size, uint64_t seed) {
  TrainerOptions t;
  t.max_steps = steps;
  t.batch_size = batch_size;
  t.seed = seed;
  return t;
}

class SegmenterTest : public ::testing::TestWithParam<Method> {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

TEST_P(SegmenterTest, SamplesHaveTheRequestedShapeAndValidClassIds) {
  auto seg = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  auto samples = seg->Sample(Images(2), 5, 0, 1, /*memory_budget_mb=*/1);
  ASSERT_TRUE(samples.ok()) << samples.status().ToString();
  EXPECT_EQ(samples->sizes(), (std::vector<int64_t>{2, 5, 16, 16}));
  EXPECT_EQ(samples->scalar_type(), torch::kLong);
  EXPECT_GE(samples->min().item<int64_t>(), 0);
  EXPECT_LT(samples->max().item<int64_t>(), 3);
  auto few = seg->Sample(Images(1), 2, 2, 1);
  ASSERT_TRUE(few.ok()) << few.status().ToString();
  EXPECT_EQ(few->sizes(), (std::vector<int64_t>{1, 2, 16, 16}));
}

TEST_P(SegmenterTest, SameSeedGivesSameSamplesAndChunkingDoesNotMatterForShape) {
  auto seg = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
  ASSERT_TRUE(seg.ok());
  const auto images = Images(2);
  auto a = seg->Sample(images, 4, 0, 11);
  auto b = seg->Sample(images, 4, 0, 11);
  auto c = seg->Sample(images, 4, 0, 12);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(torch::equal(*a, *b));
  EXPECT_FALSE(torch::equal(*a, *c));
  EXPECT_GT(seg->SamplesPerChunk(1024), 4);
  EXPECT_EQ(seg->SamplesPerChunk(0), seg->SamplesPerChunk(1));
}

TEST_P(SegmenterTest, GradientsReachEveryParameterUnderEveryLoss) {
  for (const auto& [name, kind] : kLossKindNames) {
    SCOPED_TRACE(name);
    SegmenterOptions options = SmallOptions(GetParam());
    options.loss.kind = kind;
    auto seg = Segmenter::Create(options, torch::kCPU);
    ASSERT_TRUE(seg.ok());
    torch::optim::SGD sgd(seg->Parameters(), torch::optim::SGDOptions(0.0));
    auto loss = seg->TrainStep(SmallBatch(4), sgd);
    ASSERT_TRUE(loss.ok()) << loss.status().ToString();
    EXPECT_TRUE(std::isfinite(*loss));
    for (const auto& item : seg->network()->named_parameters()) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      // The "unet" baseline feeds zeros as its label input, so the denoiser stem's weight
      // multiplies zeros by design; everything else must learn.
      if (GetParam() == Method::kUNet && item.key() == "stem.weight") continue;
      EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
    }
  }
}

TEST_P(SegmenterTest, TrainingIsDeterministicUnderAFixedSeed) {
  auto run = [] {
    auto seg = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
    EXPECT_TRUE(seg.ok());
    Trainer trainer(&*seg, Budget(3, 2, 9));
    auto progress = trainer.Run(SmallBatch(6), {});
    EXPECT_TRUE(progress.ok());
    return std::make_pair(progress->loss, seg->Parameters()[0].clone());
  };
  const auto [loss_a, weights_a] = run();
  const auto [loss_b, weights_b] = run();
  EXPECT_EQ(loss_a, loss_b);
  EXPECT_TRUE(torch::equal(weights_a, weights_b));
}

TEST_P(SegmenterTest, HeldOutLossRepeatsItsDrawsAndLeavesTrainingRandomnessAlone) {
  auto evaluated = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
  auto untouched = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
  ASSERT_TRUE(evaluated.ok() && untouched.ok());
  const auto held_out = SmallBatch(5, 8);
  auto first = evaluated->HeldOutLoss(held_out, 2, 3, 11);
  auto again = evaluated->HeldOutLoss(held_out, 2, 3, 11);
  ASSERT_TRUE(first.ok() && again.ok()) << first.status().ToString();
  EXPECT_TRUE(std::isfinite(*first));
  EXPECT_GT(*first, 0);
  EXPECT_EQ(*first, *again);
  // Its draws come from its own generator: the next training loss is what it would have been.
  auto a = evaluated->Loss(SmallBatch(2));
  auto b = untouched->Loss(SmallBatch(2));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->item<float>(), b->item<float>());
  EXPECT_FALSE(evaluated->HeldOutLoss({}, 2, 1, 0).ok());
  EXPECT_FALSE(evaluated->HeldOutLoss(held_out, 0, 1, 0).ok());
}

TEST_P(SegmenterTest, TrainerKeepsTheLatestWeightsWithinToleranceOfTheLowestHeldOutLoss) {
  auto seg = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
  ASSERT_TRUE(seg.ok());
  TrainerOptions t = Budget(12, 2, 4);
  t.learning_rate = 0.05;  // large: the held-out loss moves both ways
  t.validate_every = 3;
  t.log_every = 3;
  t.validation_draws = 2;
  t.tolerance = 0.3;
  Trainer trainer(&*seg, t);
  const auto held_out = SmallBatch(4, 8);
  trainer.SetHeldOut(held_out);
  std::vector<std::pair<int64_t, float>> evaluated;
  auto progress = trainer.Run(SmallBatch(6), [&](const TrainProgress& p) {
    evaluated.emplace_back(p.step, p.held_out_loss);
  });
  ASSERT_TRUE(progress.ok()) << progress.status().ToString();
  ASSERT_EQ(evaluated.size(), 4u);  // steps 3, 6, 9 and 12
  // The rule by hand: the latest evaluation within 30% of the lowest loss seen up to it.
  float lowest = evaluated[0].second;
  std::pair<int64_t, float> kept = evaluated[0];
  bool rose = false;  // some loss above the lowest before it: the rule is more than "the last"
  for (const auto& e : evaluated) {
    rose = rose || e.second > lowest;
    lowest = std::min(lowest, e.second);
    if (e.second <= 1.3f * lowest) kept = e;
  }
  ASSERT_TRUE(rose);
  EXPECT_EQ(progress->lowest_held_out_loss, lowest);
  EXPECT_EQ(progress->kept_step, kept.first);
  EXPECT_EQ(progress->kept_held_out_loss, kept.second);
  // The kept weights are those: evaluated again, they give that loss.
  auto copy = CheckpointStore::Copy(trainer.Kept(), "kept", torch::kCPU);
  ASSERT_TRUE(copy.ok());
  auto kept_loss = copy->HeldOutLoss(held_out, t.batch_size, t.validation_draws, t.seed);
  ASSERT_TRUE(kept_loss.ok());
  EXPECT_FLOAT_EQ(*kept_loss, kept.second);
  EXPECT_NE(&trainer.Kept(), &*seg);
  // Training on never swaps the kept weights for worse ones.
  trainer.SetBudget(6, 0);
  auto more = trainer.Run(SmallBatch(6), {});
  ASSERT_TRUE(more.ok());
  EXPECT_LE(more->kept_held_out_loss, (1 + t.tolerance) * more->lowest_held_out_loss);
  EXPECT_LE(more->lowest_held_out_loss, lowest);
}

TEST(TrainerAverageTest, FollowAverageMovesByTheWarmedUpDecay) {
  EXPECT_DOUBLE_EQ(AverageDecay(0.99, 0), 0.1);
  EXPECT_DOUBLE_EQ(AverageDecay(0.99, 10000), 0.99);
  auto other = SmallOptions(Method::kD3pm);
  other.seed = 4;
  auto average = Segmenter::Create(SmallOptions(Method::kD3pm), torch::kCPU);
  auto model = Segmenter::Create(other, torch::kCPU);
  ASSERT_TRUE(average.ok() && model.ok());
  const auto before = average->Parameters()[0].clone();
  const auto target = model->Parameters()[0].clone();
  FollowAverage(*average, *model, 0.5, 1000, 2);  // decay 0.5 twice: keeps a quarter
  EXPECT_TRUE(torch::allclose(average->Parameters()[0], 0.25 * before + 0.75 * target));

  TrainerOptions t = Budget(3, 2, 0);
  t.average_decay = 0.9;
  Trainer trainer(&*model, t);
  ASSERT_TRUE(trainer.Run(SmallBatch(4), {}).ok());
  ASSERT_NE(&trainer.Kept(), &*model);  // no held-out data: the average is kept
  EXPECT_FALSE(torch::equal(trainer.Kept().Parameters()[0], model->Parameters()[0]));
}

TEST_P(SegmenterTest, AStepThatIsNotFiniteChangesNoWeight) {
  auto seg = Segmenter::Create(SmallOptions(GetParam()), torch::kCPU);
  ASSERT_TRUE(seg.ok());
  torch::optim::Adam adam(seg->Parameters(), torch::optim::AdamOptions(1e-2));
  ASSERT_TRUE(seg->TrainStep(SmallBatch(2), adam).ok());  // the optimizer has state now
  std::vector<torch::Tensor> before;
  for (const auto& p : seg->Parameters()) before.push_back(p.detach().clone());
  std::vector<TrainingExample> poisoned = SmallBatch(2);
  poisoned[1].image[0][3][3] = std::numeric_limits<float>::quiet_NaN();
  Result<float> loss = seg->TrainStep(poisoned, adam);
  ASSERT_TRUE(loss.ok()) << loss.status().ToString();
  EXPECT_FALSE(std::isfinite(*loss));
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(torch::equal(seg->Parameters()[i], before[i])) << "parameter " << i;
  }
  EXPECT_TRUE(WeightsFinite(*seg));

  // The trainer counts such steps in its budget and skips them; good steps go on.
  TrainerOptions t = Budget(3, 2, 0);
  t.average_decay = 0.9;
  Trainer trainer(&*seg, t);
  Result<TrainProgress> bad = trainer.Run({poisoned[1]}, {});
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  EXPECT_EQ(bad->step, 3);
  EXPECT_EQ(bad->skipped_steps, 3);
  EXPECT_TRUE(WeightsFinite(*seg));
  EXPECT_TRUE(WeightsFinite(trainer.Kept()));
  Result<TrainProgress> good = trainer.Run(SmallBatch(2), {});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->skipped_steps, 3);
  EXPECT_TRUE(std::isfinite(good->loss));
  EXPECT_FALSE(torch::equal(seg->Parameters()[0], before[0]));

  seg->Parameters()[0].detach()[0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(WeightsFinite(*seg));
}

TEST_P(SegmenterTest, CheckpointRoundTripGivesIdenticalSamples) {
  SegmenterOptions options = SmallOptions(GetParam());
  options.loss.kind = LossKind::kPceCv;
  options.loss.cv_temperature = 0.05;
  options.augment.rotations = true;
  options.augment.noise = 0.04;
  options.d3pm.beta_end = 0.05;
  options.d3pm.prior_share = 0.25;
  options.loss.dense_weight = 0.01;
  auto seg = Segmenter::Create(options, torch::kCPU);
  ASSERT_TRUE(seg.ok());
  torch::optim::Adam adam(seg->Parameters(), torch::optim::AdamOptions(1e-2));
  ASSERT_TRUE(seg->TrainStep(SmallBatch(2), adam).ok());
  const std::string path = ::testing::TempDir() + "/segmenter_" + MethodName(GetParam()) + ".pt";
  ASSERT_TRUE(CheckpointStore::Save(*seg, path).ok());
  auto loaded = CheckpointStore::Load(path, torch::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->options().method, GetParam());
  EXPECT_EQ(loaded->options().resolution, 16);
  EXPECT_EQ(loaded->options().loss.kind, LossKind::kPceCv);
  EXPECT_EQ(loaded->options().loss.cv_temperature, 0.05);
  EXPECT_TRUE(loaded->options().augment.rotations);
  EXPECT_EQ(loaded->options().augment.noise, 0.04);
  EXPECT_EQ(loaded->options().d3pm.beta_end, 0.05);
  EXPECT_EQ(loaded->options().d3pm.prior_share, 0.25);
  EXPECT_EQ(loaded->options().loss.dense_weight, 0.01);
  const auto images = Images(1);
  auto a = seg->Sample(images, 3, 0, 5);
  auto b = loaded->Sample(images, 3, 0, 5);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(torch::equal(*a, *b));
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(AllMethods, SegmenterTest,
                         ::testing::Values(Method::kD3pm, Method::kGaussianX0, Method::kUNet),
                         [](const ::testing::TestParamInfo<Method>& param_info) {
                           return std::string(MethodName(param_info.param));
                         });

SegmenterOptions ClickInputOptions(Method method) {
  SegmenterOptions o = SmallOptions(method);
  o.click_input = true;
  return o;
}

// The gradient that reaches the encoder's weights on the guidance channels in one step.
double GuidanceGradient(Segmenter& seg, const std::vector<TrainingExample>& batch) {
  torch::optim::SGD sgd(seg.Parameters(), torch::optim::SGDOptions(0.0));
  EXPECT_TRUE(seg.TrainStep(batch, sgd).ok());
  const auto stem = seg.network()->named_parameters()["encoder.stem.weight"];
  const int64_t image_channels = seg.options().unet.image_channels;
  return stem.grad().slice(1, image_channels).abs().sum().item<double>();
}

class ClickInputTest : public SegmenterTest {};

TEST_P(ClickInputTest, TrainingShowsClicksOfClickExamplesAndSimulatesThemOnDenseMasksWhenAsked) {
  auto seg = Segmenter::Create(ClickInputOptions(GetParam()), torch::kCPU);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  EXPECT_EQ(seg->options().unet.guidance_channels, 3);
  std::vector<TrainingExample> dense, pseudo, clicked;
  for (const auto& s : Shapes(4)) {
    dense.push_back(MakeDenseExample(s.image, s.mask, 3).value());
    TrainingExample p = MakeDenseExample(s.image, s.mask, 3).value();
    p.dense = false;  // as a pseudo-label: confident pixels known, not clicks
    p.known = s.mask > 0;
    pseudo.push_back(p);
    clicked.push_back(MakeClickExample(s.image, s.clicks, 3).value());
  }
  // The guidance weights start at zero: an untrained click_input model ignores clicks.
  const auto stem = seg->network()->named_parameters()["encoder.stem.weight"];
  EXPECT_EQ(stem.slice(1, 1).abs().sum().item<double>(), 0.0);
  EXPECT_GT(stem.slice(1, 0, 1).abs().sum().item<double>(), 0.0);
  EXPECT_EQ(GuidanceGradient(*seg, dense), 0.0);
  EXPECT_EQ(GuidanceGradient(*seg, pseudo), 0.0);
  // One click per image: it is always held back, never shown.
  std::vector<TrainingExample> single;
  for (const auto& s : Shapes(4)) {
    single.push_back(MakeClickExample(s.image, {s.clicks.front()}, 3).value());
  }
  for (int step = 0; step < 4; ++step) EXPECT_EQ(GuidanceGradient(*seg, single), 0.0);
  // Two clicks per image: one may be shown (probability 1/2), so over 4 steps of 4 images some are.
  ASSERT_EQ(Shapes(1)[0].clicks.size(), 2u);
  double shown = 0;
  for (int step = 0; step < 4; ++step) shown += GuidanceGradient(*seg, clicked);
  EXPECT_GT(shown, 0.0);
  // With simulated_clicks, dense masks are shown clicks drawn from their labels; pseudo-labels
  // never are.
  SegmenterOptions simulating = ClickInputOptions(GetParam());
  simulating.simulated_clicks = 1;
  auto sim = Segmenter::Create(simulating, torch::kCPU);
  ASSERT_TRUE(sim.ok());
  EXPECT_GT(GuidanceGradient(*sim, dense), 0.0);
  EXPECT_EQ(GuidanceGradient(*sim, pseudo), 0.0);
  // So are partial label maps (scribbles: here the mask's class pixels and one background row).
  std::vector<TrainingExample> scribbled;
  for (const auto& s : Shapes(4)) {
    auto labels = torch::where(s.mask > 0, s.mask, kUnknownClass);
    labels[0].fill_(0);
    scribbled.push_back(MakePartialExample(s.image, labels, {}, 3).value());
  }
  EXPECT_EQ(GuidanceGradient(*seg, scribbled), 0.0);
  EXPECT_GT(GuidanceGradient(*sim, scribbled), 0.0);
  simulating.simulated_clicks = 1.5;
  EXPECT_EQ(Segmenter::Create(simulating, torch::kCPU).status().code(),
            StatusCode::kInvalidArgument);
  SegmenterOptions prior = ClickInputOptions(GetParam());
  prior.d3pm.prior_share = 1.5;
  EXPECT_EQ(Segmenter::Create(prior, torch::kCPU).status().code(), StatusCode::kInvalidArgument);
  SegmenterOptions unweighted = ClickInputOptions(GetParam());
  unweighted.loss.dense_weight = 0;
  EXPECT_EQ(Segmenter::Create(unweighted, torch::kCPU).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(ClickInputTest, ShownClicksChangeTheSamplesAndEveryMaskHoldsThem) {
  for (const ClickGuidanceKind kind :
       {ClickGuidanceKind::kGaussian, ClickGuidanceKind::kGeodesic}) {
    SCOPED_TRACE(ClickGuidanceName(kind));
    SegmenterOptions options = ClickInputOptions(GetParam());
    options.click_guidance = kind;
    auto seg = Segmenter::Create(options, torch::kCPU);
    ASSERT_TRUE(seg.ok());
    // Train the guidance weights away from zero on images with two clicks.
    std::vector<TrainingExample> clicked;
    for (const auto& s : Shapes(4))
      clicked.push_back(MakeClickExample(s.image, s.clicks, 3).value());
    torch::optim::Adam adam(seg->Parameters(), torch::optim::AdamOptions(1e-2));
    for (int step = 0; step < 6; ++step) ASSERT_TRUE(seg->TrainStep(clicked, adam).ok());
    const auto shapes = Shapes(1);
    const auto image = shapes[0].image.unsqueeze(0);
    const std::vector<Click> clicks = {Click{4, 5, 2, true}, Click{12, 12, 1, false}};
    auto plain = seg->Sample(image, 6, 0, 11);
    auto with = seg->Sample(image, 6, 0, 11, 64, {clicks});
    ASSERT_TRUE(plain.ok() && with.ok()) << with.status().ToString();
    EXPECT_TRUE(with->select(3, 4).select(2, 5).eq(2).all().item<bool>());
    EXPECT_TRUE(with->select(3, 12).select(2, 12).eq(0).all().item<bool>());
    auto elsewhere = torch::ones({16, 16}, torch::kBool);
    elsewhere[5][4] = false;
    elsewhere[12][12] = false;
    EXPECT_FALSE(torch::equal(plain->masked_select(elsewhere), with->masked_select(elsewhere)))
        << "the network did not see the clicks";
    // A saved model keeps its click input.
    const std::string path =
        ::testing::TempDir() + "/click_input_" + MethodName(GetParam()) + ".pt";
    ASSERT_TRUE(CheckpointStore::Save(*seg, path).ok());
    auto loaded = CheckpointStore::Load(path, torch::kCPU);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_TRUE(loaded->options().click_input);
    EXPECT_EQ(loaded->options().click_guidance, kind);
    auto again = loaded->Sample(image, 6, 0, 11, 64, {clicks});
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(torch::equal(*with, *again));
    std::remove(path.c_str());
    // Clicks off the grid, of an unknown class or not one list per image are refused.
    EXPECT_EQ(seg->Sample(image, 2, 0, 1, 64, {{Click{16, 0, 1, true}}}).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(seg->Sample(image, 2, 0, 1, 64, {{Click{1, 1, 3, true}}}).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(seg->Sample(image, 2, 0, 1, 64, {{}, {}}).status().code(),
              StatusCode::kInvalidArgument);
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, ClickInputTest,
                         ::testing::Values(Method::kD3pm, Method::kGaussianX0, Method::kUNet),
                         [](const ::testing::TestParamInfo<Method>& param_info) {
                           return std::string(MethodName(param_info.param));
                         });

TEST(SegmenterErrorsTest, RejectsBadOptionsAndInputs) {
  auto options = SmallOptions(Method::kD3pm);
  options.resolution = 18;  // not divisible by 4
  EXPECT_EQ(Segmenter::Create(options, torch::kCPU).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(ParseMethod("ddim").ok());
  auto seg = Segmenter::Create(SmallOptions(Method::kD3pm), torch::kCPU);
  ASSERT_TRUE(seg.ok());
  EXPECT_EQ(seg->Sample(torch::zeros({1, 1, 8, 8}), 2, 0, 1).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(seg->Sample(Images(1), 0, 0, 1).status().code(), StatusCode::kInvalidArgument);
  auto batch = SmallBatch(1);
  batch[0].target[0][0] = 7;  // unknown class
  torch::optim::SGD sgd(seg->Parameters(), torch::optim::SGDOptions(0.0));
  EXPECT_EQ(seg->TrainStep(batch, sgd).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(seg->NetworkEvaluations(0), 10);
  EXPECT_EQ(seg->NetworkEvaluations(4), 4);
}

TEST(CheckpointStoreTest, ReportsMissingAndCorruptFiles) {
  EXPECT_EQ(CheckpointStore::Load("/nonexistent/model.pt", torch::kCPU).status().code(),
            StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/corrupt.pt";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("not a checkpoint", f);
  std::fclose(f);
  EXPECT_EQ(CheckpointStore::Load(path, torch::kCPU).status().code(), StatusCode::kDataLoss);
  std::remove(path.c_str());
}

TEST(TrainingExampleTest, ClickMapMarksClicksAndRejectsOutsideClicks) {
  const auto image = torch::zeros({1, 8, 8});
  auto ex = MakeClickExample(image, {{2, 3, 1, true}, {5, 5, 0, false}}, 2);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->target[3][2].item<int64_t>(), 1);
  EXPECT_EQ(ex->target.sum().item<int64_t>(), 1);
  EXPECT_TRUE(ex->known[5][5].item<bool>());
  EXPECT_EQ(MakeClickExample(image, {{8, 0, 1, true}}, 2).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeClickExample(image, {{1, 1, 2, true}}, 2).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(TrainingExampleTest, APartialLabelMapKnowsItsMarkedPixelsAndItsClicksOnly) {
  const auto image = torch::zeros({1, 8, 8});
  auto labels = torch::full({8, 8}, kUnknownClass, torch::kLong);
  labels[2].slice(0, 1, 5).fill_(1);  // a stroke of class 1
  labels[7].fill_(0);                 // one of background
  auto ex = MakeSupervisedExample(image, {{6, 4, 1, true}, {0, 0, 0, false}}, labels, 2,
                                  /*partial=*/true);
  ASSERT_TRUE(ex.ok()) << ex.status().ToString();
  ASSERT_TRUE(ex->has_value());
  const TrainingExample& e = **ex;
  EXPECT_TRUE(e.partial);
  EXPECT_FALSE(e.dense);
  EXPECT_FALSE(e.clicks_as_input);  // its clicks are simulated, as on a dense mask
  EXPECT_EQ(e.known.sum().item<int64_t>(), 4 + 8 + 2);
  EXPECT_EQ(e.target.sum().item<int64_t>(), 4 + 1);  // the stroke and the positive click
  EXPECT_EQ(e.target[3][3].item<int64_t>(), 0);      // unknown pixels hold no class id
  EXPECT_FALSE(e.known[3][3].item<bool>());
  EXPECT_TRUE(e.known[0][0].item<bool>());
  // A map not said to be partial is a dense mask; a partial one with no labelled pixel or a bad id
  // is an error, and no mask labels a partial map's unknown pixels (LabelUnclicked is for click
  // maps).
  auto dense = MakeSupervisedExample(image, {}, torch::zeros({8, 8}, torch::kLong), 2);
  ASSERT_TRUE(dense.ok() && dense->has_value());
  EXPECT_TRUE((*dense)->dense);
  EXPECT_THAT(
      MakePartialExample(image, torch::full({8, 8}, kUnknownClass), {}, 2).status().message(),
      ::testing::HasSubstr("labels no pixel"));
  labels[0][0] = 3;
  EXPECT_THAT(MakePartialExample(image, labels, {}, 2).status().message(),
              ::testing::HasSubstr("holds 3, not a class id in [0, 2) nor 255"));
  EXPECT_EQ(LabelUnclicked(e, torch::zeros({8, 8}, torch::kLong), 2).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(TrainingExampleTest, AMaskLabelsOnlyTheUnclickedPixelsOfAClickMap) {
  const auto image = torch::zeros({1, 8, 8});
  // A positive click at (2,3) and a negative one at (5,5), both inside the mask's object.
  const TrainingExample clicks =
      MakeClickExample(image, {{2, 3, 1, true}, {5, 5, 0, false}}, 2).value();
  auto mask = torch::zeros({8, 8}, torch::kLong);
  mask.slice(0, 2, 7).slice(1, 1, 7).fill_(1);  // 5 x 6 = 30 pixels
  Result<TrainingExample> labelled = LabelUnclicked(clicks, mask, 2);
  ASSERT_TRUE(labelled.ok()) << labelled.status().ToString();
  EXPECT_EQ(labelled->target[3][2].item<int64_t>(), 1);
  EXPECT_EQ(labelled->target[5][5].item<int64_t>(), 0);  // the negative click wins over the mask
  EXPECT_EQ(labelled->target.sum().item<int64_t>(), 29);
  EXPECT_TRUE(torch::equal(labelled->known, clicks.known));  // still only the clicks are known
  EXPECT_TRUE(labelled->clicks_as_input);
  EXPECT_FALSE(labelled->dense);
  // Not a click map, a mask of another size or with a class the model lacks: refused.
  const TrainingExample dense = MakeDenseExample(image, mask, 2).value();
  EXPECT_EQ(LabelUnclicked(dense, mask, 2).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LabelUnclicked(clicks, torch::zeros({8, 7}, torch::kLong), 2).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LabelUnclicked(clicks, mask * 2, 2).status().code(), StatusCode::kInvalidArgument);
}

TEST(TrainingExampleTest, AClicksRegionBeatsTheMaskUpToAnEdge) {
  // 32x32: region radius 2 cells. The left half dark, the right half bright; the mask says
  // "object" everywhere, negative clicks at (8,4) and (12,16) say background.
  ASSERT_EQ(ClickRegionRadius(32), 2.0);
  ASSERT_EQ(ClickRegionRadius(64), 4.0);
  auto image = torch::zeros({1, 32, 32});
  image.slice(2, 16).fill_(1);
  const TrainingExample clicks =
      MakeClickExample(image, {{8, 4, 0, false}, {12, 16, 0, false}}, 2).value();
  Result<TrainingExample> labelled = LabelUnclicked(clicks, torch::ones({32, 32}, torch::kLong), 2);
  ASSERT_TRUE(labelled.ok()) << labelled.status().ToString();
  const auto at = [&](int x, int y) { return labelled->target[y][x].item<int64_t>(); };
  EXPECT_EQ(at(8, 4), 0);
  EXPECT_EQ(at(10, 4), 0);  // two cells away on a flat stretch
  EXPECT_EQ(at(8, 6), 0);
  EXPECT_EQ(at(11, 4), 1);  // three: the mask's
  EXPECT_EQ(at(10, 16), 0);
  EXPECT_EQ(at(14, 16), 1);  // two cells away but at the edge: the mask's
  EXPECT_TRUE(torch::equal(labelled->known, clicks.known));
}

TEST(SyntheticTest, IsSeededAndClicksLieInsideTheirObject) {
  SyntheticOptions o;
  o.num_classes = 3;
  const auto a = GenerateSynthetic(o, 3, 42);
  const auto b = GenerateSynthetic(o, 3, 42);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].image, b[i].image));
    EXPECT_EQ(a[i].image.sizes(), (std::vector<int64_t>{1, 64, 64}));
    EXPECT_GE(a[i].image.min().item<float>(), 0.0f);
    EXPECT_LE(a[i].image.max().item<float>(), 1.0f);
    ASSERT_FALSE(a[i].clicks.empty());
    for (const auto& c : a[i].clicks) {
      EXPECT_EQ(a[i].mask[c.y][c.x].item<int64_t>(), c.class_id);
    }
  }
}

TEST(SyntheticTest, ColourTintsTheGrayImageWithAHuePerClassThatGrayConversionRemoves) {
  SyntheticOptions o;
  const auto gray = GenerateSynthetic(o, 2, 7);
  o.color = true;
  const auto colour = GenerateSynthetic(o, 2, 7);
  for (size_t i = 0; i < gray.size(); ++i) {
    ASSERT_EQ(colour[i].image.sizes(), (std::vector<int64_t>{3, 64, 64}));
    EXPECT_TRUE(torch::equal(colour[i].mask, gray[i].mask));
    ASSERT_EQ(colour[i].clicks.size(), gray[i].clicks.size());
    EXPECT_EQ(colour[i].clicks[0].x, gray[i].clicks[0].x);
    // Rec. 709 gray of the colour image is the gray image wherever nothing was clipped.
    const auto luma = (colour[i].image * torch::tensor({0.2126f, 0.7152f, 0.0722f}).view({3, 1, 1}))
                          .sum(0, /*keepdim=*/true);
    const auto unclipped = colour[i].image.gt(0).logical_and(colour[i].image.lt(1)).all(0, true);
    EXPECT_LT((luma - gray[i].image).abs().masked_select(unclipped).max().item<float>(), 1e-5);
    // The organ's mean colour differs from the background's.
    const auto organ = colour[i].mask.eq(1);
    const auto organ_rgb = colour[i].image.masked_select(organ).view({3, -1}).mean(1);
    const auto background_rgb =
        colour[i].image.masked_select(organ.logical_not()).view({3, -1}).mean(1);
    EXPECT_GT((organ_rgb - gray[i].image.masked_select(organ).mean() -
               (background_rgb - gray[i].image.masked_select(organ.logical_not()).mean()))
                  .norm()
                  .item<float>(),
              0.15f);
  }
}

}  // namespace
}  // namespace clickdiff::model
