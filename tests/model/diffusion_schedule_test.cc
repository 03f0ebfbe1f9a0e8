// Schedules and posteriors of the two diffusion processes, checked against hand-computed numbers
// (Python, float64) and brute-force Bayes rule.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/d3pm.h"
#include "model/diffusion.h"
#include "model/gaussian_x0.h"

namespace clickdiff::model {
namespace {

TEST(GaussianX0ScheduleTest, MatchesPythonReferenceForFourSteps) {
  GaussianX0Process process(2, GaussianX0Options{});
  // beta_t = 1 - exp(-0.1/4 - 0.5 * 19.9 * (2t - 1) / 16), computed with Python's math module.
  const double betas[] = {0.0, 0.4763202784776236, 0.8490225815440854, 0.956473050326738,
                          0.9874511343005119};
  const double abar[] = {1.0, 0.5236797215223764, 0.07906381245316066, 0.003441406585624948,
                         4.318574906034136e-05};
  for (int t = 0; t <= 4; ++t) {
    EXPECT_NEAR(process.betas()[t].item<double>(), betas[t], 1e-14) << "t=" << t;
    EXPECT_NEAR(process.alphas_cumprod()[t].item<double>(), abar[t], 1e-14) << "t=" << t;
  }
  // Posterior q(x_{t-1} | x_t, x0): {x0 coefficient, x_t coefficient, variance}.
  const double expected[5][3] = {{0, 0, 0},
                                 {1.0, 0.0, 0.0},
                                 {0.6671486034974808, 0.20096736126141215, 0.43912561797806565},
                                 {0.2698725890003949, 0.192799461601651, 0.8838924778534716},
                                 {0.057929844334843744, 0.11164102878401144, 0.9840954123614769}};
  for (int t = 1; t <= 4; ++t) {
    const auto c = process.Posterior(t - 1, t);
    EXPECT_NEAR(c.x0, expected[t][0], 1e-12) << "t=" << t;
    EXPECT_NEAR(c.xt, expected[t][1], 1e-12) << "t=" << t;
    EXPECT_NEAR(c.variance, expected[t][2], 1e-12) << "t=" << t;
  }
}

TEST(GaussianX0ScheduleTest, PosteriorMatchesGaussianConditioning) {
  // For a skipped step s < t the posterior must equal conditioning the joint Gaussian of
  // (x_s, x_t) given x0: x_t = sqrt(a) x_s + sqrt(1-a) e, a = abar_t / abar_s.
  GaussianX0Process process(2, GaussianX0Options{});
  const double abar_s = process.alphas_cumprod()[1].item<double>();
  const double abar_t = process.alphas_cumprod()[3].item<double>();
  const double a = abar_t / abar_s;
  // Var(x_s|x0) = 1 - abar_s; Cov(x_s, x_t|x0) = sqrt(a)(1 - abar_s); Var(x_t|x0) = 1 - abar_t.
  const double gain = std::sqrt(a) * (1 - abar_s) / (1 - abar_t);
  const double variance = (1 - abar_s) - gain * std::sqrt(a) * (1 - abar_s);
  const double x0_coefficient = std::sqrt(abar_s) - gain * std::sqrt(abar_t);
  const auto c = process.Posterior(1, 3);
  EXPECT_NEAR(c.xt, gain, 1e-12);
  EXPECT_NEAR(c.variance, variance, 1e-12);
  EXPECT_NEAR(c.x0, x0_coefficient, 1e-12);
}

TEST(D3pmScheduleTest, RowsSumToOneAndCumulativeIsTheProduct) {
  D3pmProcess process(3, D3pmOptions{});
  const auto& q = process.step_matrices();
  const auto& qbar = process.cumulative_matrices();
  ASSERT_EQ(q.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(q.sum(-1), torch::ones({201, 3}, torch::kDouble), 0, 1e-14));
  EXPECT_TRUE(torch::allclose(qbar.sum(-1), torch::ones({201, 3}, torch::kDouble), 0, 1e-12));
  EXPECT_NEAR(process.betas()[1].item<double>(), 1e-4, 1e-15);
  EXPECT_NEAR(process.betas()[200].item<double>(), 0.02, 1e-15);
  auto product = torch::eye(3, torch::kDouble);
  for (int t = 1; t <= 200; ++t) {
    product = torch::matmul(product, q[t]);
    ASSERT_TRUE(torch::allclose(product, qbar[t], 0, 1e-13)) << "t=" << t;
  }
  // Uniform transitions: Qbar_t = abar_t I + (1 - abar_t)/K 11^T with abar_t = prod(1 - beta).
  const double abar_T = torch::prod(1 - process.betas()).item<double>();
  EXPECT_NEAR(abar_T, 0.13218275425061793, 1e-12);  // Python reference
  EXPECT_NEAR(qbar[200][0][0].item<double>(), abar_T + (1 - abar_T) / 3, 1e-12);
  EXPECT_TRUE(torch::allclose(process.Transition(50, 120), torch::linalg_solve(qbar[50], qbar[120]),
                              0, 1e-12));
}

TEST(D3pmScheduleTest, PriorIsTheTrueMarginalOfABackgroundPixel) {
  D3pmProcess process(2, D3pmOptions{});
  const auto prior = process.PriorProbs();
  EXPECT_NEAR(prior[0].item<double>(), 0.5660913771253089, 1e-12);  // abar_T + (1-abar_T)/2
  EXPECT_NEAR(prior.sum().item<double>(), 1.0, 1e-14);
}

// With prior_share, a share of the training examples is the sampler's own start: t = T and a state
// drawn from the prior whatever the label; the others are noised from their label as before.
TEST(D3pmNoiseTest, PriorShareTrainsTheSamplersStartWhateverTheLabel) {
  const auto x0 = torch::ones({400, 16, 16}, torch::kLong);  // all object
  D3pmOptions plain;
  D3pmOptions prior = plain;
  prior.prior_share = 1;
  auto gen = MakeGenerator(3);
  const NoisedBatch all = D3pmProcess(2, prior).Noise(x0, gen);
  EXPECT_TRUE((all.timesteps == 200).all().item<bool>());
  const double background = (all.state == 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(background, 0.566, 0.01);  // the prior's, not q(x_T | x0 = object)'s 0.434

  prior.prior_share = 0.25;
  gen = MakeGenerator(3);
  const NoisedBatch some = D3pmProcess(2, prior).Noise(x0, gen);
  const auto at_t = (some.timesteps == 200).to(torch::kDouble);
  EXPECT_NEAR(at_t.mean().item<double>(), 0.25 + 0.75 / 200, 0.06);
  // Examples that were not replaced are noised from their label: at small t they stay object.
  const auto early = some.timesteps < 20;
  ASSERT_GT(early.sum().item<int64_t>(), 0);
  const auto kept = (some.state == 1).to(torch::kDouble).mean({1, 2}).index({early});
  EXPECT_GT(kept.min().item<double>(), 0.75);
  // Without it, uniform timesteps put about 2 of 400 examples at T.
  gen = MakeGenerator(3);
  const NoisedBatch none = D3pmProcess(2, plain).Noise(x0, gen);
  EXPECT_LT((none.timesteps == 200).sum().item<int64_t>(), 10);
}

// Brute force: p(x_s | x_t) = sum_x0 q(x_s, x_t | x0) p(x0) / sum_{x_s} (same), enumerating x0
// and x_s with the forward matrices only.
TEST(D3pmPosteriorTest, MatchesBruteForceBayesRule) {
  const int64_t k = 3;
  D3pmProcess process(k, D3pmOptions{});
  const auto p_x0 = torch::tensor({0.2, 0.5, 0.3}, torch::kDouble);
  for (auto [s, t] : {std::pair<int64_t, int64_t>{0, 1}, {9, 10}, {40, 41}, {50, 120}, {0, 200}}) {
    const auto q_st = process.Transition(s, t);
    const auto qbar_s = process.cumulative_matrices()[s];
    for (int64_t x_t = 0; x_t < k; ++x_t) {
      std::vector<double> joint(k, 0.0);
      for (int64_t x0 = 0; x0 < k; ++x0) {
        for (int64_t xs = 0; xs < k; ++xs) {
          joint[xs] += p_x0[x0].item<double>() * qbar_s[x0][xs].item<double>() *
                       q_st[xs][x_t].item<double>();
        }
      }
      const double z = joint[0] + joint[1] + joint[2];
      const auto x_t_map = torch::full({1, 1, 1}, x_t, torch::kLong);
      const auto probs = D3pmProcess::Posterior(x_t_map, p_x0.view({1, k, 1, 1}), q_st, qbar_s);
      for (int64_t xs = 0; xs < k; ++xs) {
        EXPECT_NEAR(probs[0][xs][0][0].item<double>(), joint[xs] / z, 1e-12)
            << "s=" << s << " t=" << t << " x_t=" << x_t << " x_s=" << xs;
      }
    }
  }
}

TEST(D3pmPosteriorTest, OneHotX0GivesTheExactForwardPosterior) {
  // q(x_{t-1} | x_t, x0) = q(x_t | x_{t-1}) q(x_{t-1} | x0) / q(x_t | x0).
  D3pmProcess process(2, D3pmOptions{});
  const int64_t t = 37;
  const auto& q = process.step_matrices();
  const auto& qbar = process.cumulative_matrices();
  const auto x0 = torch::tensor({1.0, 0.0}, torch::kDouble).view({1, 2, 1, 1});
  const auto probs =
      D3pmProcess::Posterior(torch::ones({1, 1, 1}, torch::kLong), x0, q[t], qbar[t - 1]);
  for (int64_t xs = 0; xs < 2; ++xs) {
    const double expected = q[t][xs][1].item<double>() * qbar[t - 1][0][xs].item<double>() /
                            qbar[t][0][1].item<double>();
    EXPECT_NEAR(probs[0][xs][0][0].item<double>(), expected, 1e-12);
  }
}

TEST(RespacedTimestepsTest, VisitsTThenDescendsToZero) {
  EXPECT_EQ(RespacedTimesteps(200, 4), (std::vector<int64_t>{200, 150, 100, 50, 0}));
  EXPECT_EQ(RespacedTimesteps(4, 0), (std::vector<int64_t>{4, 3, 2, 1, 0}));
  EXPECT_EQ(RespacedTimesteps(4, 9), (std::vector<int64_t>{4, 3, 2, 1, 0}));
  EXPECT_EQ(RespacedTimesteps(4, 2), (std::vector<int64_t>{4, 2, 0}));
}

TEST(SampleCategoricalTest, FollowsTheProbabilities) {
  auto gen = MakeGenerator(7);
  const auto probs = torch::tensor({0.1f, 0.6f, 0.3f}).view({1, 3, 1, 1}).expand({1, 3, 200, 200});
  const auto ids = SampleCategorical(probs.contiguous(), gen);
  for (int64_t c = 0; c < 3; ++c) {
    const double freq = (ids == c).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(freq, probs[0][c][0][0].item<float>(), 0.01) << "class " << c;
  }
}

}  // namespace
}  // namespace clickdiff::model
