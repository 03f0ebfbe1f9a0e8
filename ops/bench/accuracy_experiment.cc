// ops/bench/accuracy_experiment.cc — trains one method on generated binary-organ data from one
// click per object, calibrates the decision rule on validation images and prints test Dice.
// Not a benchmark: an experiment driver for tuning the defaults. Usage:
//   accuracy_experiment method=d3pm seconds=120 [steps=0] [lr=2e-3] [batch=8] [width=16]
//     [encoder=32] [levels=4] [res=64] [train=400] [val=16] [test=32] [samples=16]
//     [sample_steps=0] [threads=2] [seed=1] [dense=0] [curve=0]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "model/aggregator.h"
#include "model/segmenter.h"
#include "model/synthetic.h"
#include "model/trainer.h"

namespace cm = clickdiff::model;

namespace {

std::map<std::string, std::string> ParseArgs(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const auto eq = a.find('=');
    if (eq != std::string::npos) args[a.substr(0, eq)] = a.substr(eq + 1);
  }
  return args;
}

double Dice(const torch::Tensor& pred, const torch::Tensor& truth) {
  const double inter = pred.logical_and(truth).sum().item<double>();
  const double total = pred.sum().item<double>() + truth.sum().item<double>();
  return total == 0 ? 1.0 : 2 * inter / total;
}

// Mean Dice of a rule over images: samples [B,N,H,W].
double RuleDice(const clickdiff::model::AggregatorOptions& options, const torch::Tensor& samples,
                const std::vector<cm::SyntheticSample>& data) {
  auto aggregator = clickdiff::model::Aggregator::Create(options);
  if (!aggregator.ok()) return -1;
  double sum = 0;
  for (int64_t b = 0; b < samples.size(0); ++b) {
    auto agg = aggregator->Aggregate(samples[b]);
    if (!agg.ok()) return -1;
    sum += Dice(agg->mask > 0, data[b].mask > 0);
  }
  return sum / samples.size(0);
}

double DiskDice(const std::vector<cm::SyntheticSample>& data, double radius) {
  double sum = 0;
  for (const auto& s : data) {
    const int64_t h = s.mask.size(0), w = s.mask.size(1);
    const auto ys = torch::arange(h).view({h, 1}).to(torch::kFloat);
    const auto xs = torch::arange(w).view({1, w}).to(torch::kFloat);
    const auto& c = s.clicks.at(0);
    const auto disk = (ys - c.y).pow(2) + (xs - c.x).pow(2) <= radius * radius;
    sum += Dice(disk, s.mask > 0);
  }
  return sum / static_cast<double>(data.size());
}

struct Choice {
  clickdiff::model::AggregatorOptions options;
  double val = -1;
  std::string name;
};

}  // namespace

int main(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  auto get = [&](const std::string& k, const std::string& d) {
    return args.count(k) ? args[k] : d;
  };
  torch::set_num_threads(std::stoi(get("threads", "2")));
  const int64_t res = std::stoll(get("res", "64"));
  cm::SegmenterOptions options;
  auto method = cm::ParseMethod(get("method", "d3pm"));
  if (!method.ok()) {
    std::fprintf(stderr, "%s\n", method.status().ToString().c_str());
    return 2;
  }
  options.method = *method;
  options.resolution = res;
  options.unet.base_width = std::stoll(get("width", std::to_string(options.unet.base_width)));
  options.unet.encoder_width =
      std::stoll(get("encoder", std::to_string(options.unet.encoder_width)));
  options.unet.levels = std::stoll(get("levels", std::to_string(options.unet.levels)));
  options.loss.vlb_weight = std::stod(get("vlb", std::to_string(options.loss.vlb_weight)));
  options.seed = std::stoull(get("seed", "1"));
  const bool dense = get("dense", "0") == "1";

  cm::SyntheticOptions synth;
  synth.height = synth.width = res;
  const auto train = cm::GenerateSynthetic(synth, std::stoll(get("train", "400")), 101);
  const auto val = cm::GenerateSynthetic(synth, std::stoll(get("val", "16")), 202);
  const auto test = cm::GenerateSynthetic(synth, std::stoll(get("test", "32")), 303);
  std::vector<cm::TrainingExample> examples;
  for (const auto& s : train) {
    auto ex = dense ? cm::MakeDenseExample(s.image, s.mask, 2)
                    : cm::MakeClickExample(s.image, s.clicks, 2);
    examples.push_back(*ex);
  }

  auto segmenter = cm::Segmenter::Create(options, torch::kCPU);
  if (!segmenter.ok()) {
    std::fprintf(stderr, "%s\n", segmenter.status().ToString().c_str());
    return 1;
  }
  cm::TrainerOptions topt;
  topt.batch_size = std::stoll(get("batch", "8"));
  topt.learning_rate = std::stod(get("lr", "2e-3"));
  topt.max_seconds = std::stod(get("seconds", "60"));
  topt.max_steps = std::stoll(get("steps", "0"));
  topt.seed = options.seed;
  topt.log_every = 100;
  cm::Trainer trainer(&*segmenter, topt);
  auto trained = trainer.Run(examples, [](const cm::TrainProgress& p) {
    std::printf("step %lld loss %.5f %.2f steps/s %.1fs\n", static_cast<long long>(p.step), p.loss,
                p.steps_per_second, p.elapsed_seconds);
    std::fflush(stdout);
  });
  if (!trained.ok()) {
    std::fprintf(stderr, "%s\n", trained.status().ToString().c_str());
    return 1;
  }

  const int64_t n = std::stoll(get("samples", "16"));
  const int64_t steps = std::stoll(get("sample_steps", "0"));
  auto stack = [](const std::vector<cm::SyntheticSample>& d) {
    std::vector<torch::Tensor> v;
    for (const auto& s : d) v.push_back(s.image);
    return torch::stack(v);
  };
  auto t0 = std::chrono::steady_clock::now();
  auto val_samples = segmenter->Sample(stack(val), n, steps, 7);
  auto t1 = std::chrono::steady_clock::now();
  auto test_samples = segmenter->Sample(stack(test), n, steps, 8);
  if (!val_samples.ok() || !test_samples.ok()) {
    std::fprintf(stderr, "sampling failed\n");
    return 1;
  }
  const double per_image = std::chrono::duration<double>(t1 - t0).count() / val.size();
  std::printf(
      "method %s: %lld train steps, %.1f s, %.2f steps/s; sampling N=%lld steps=%lld "
      "(%lld evaluations/sample): %.2f s/image; fg fraction of samples %.4f\n",
      cm::MethodName(options.method), static_cast<long long>(trained->step),
      trained->elapsed_seconds, trained->steps_per_second, static_cast<long long>(n),
      static_cast<long long>(steps), static_cast<long long>(segmenter->NetworkEvaluations(steps)),
      per_image, (*test_samples > 0).to(torch::kFloat).mean().item<double>());

  std::vector<Choice> families(3);
  families[0].name = "majority";
  families[0].options.rule = clickdiff::model::AggregationRule::kMajority;
  families[0].val = RuleDice(families[0].options, *val_samples, val);
  for (double t : {0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6}) {
    clickdiff::model::AggregatorOptions o;
    o.rule = clickdiff::model::AggregationRule::kThreshold;
    o.threshold = t;
    const double d = RuleDice(o, *val_samples, val);
    if (d > families[1].val) families[1] = {o, d, "threshold " + std::to_string(t)};
  }
  for (double sigma : {1.0, 2.0, 3.0, 4.0}) {
    for (double rel : {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6}) {
      clickdiff::model::AggregatorOptions o;
      o.rule = clickdiff::model::AggregationRule::kDensity;
      o.density_sigma = sigma;
      o.density_relative_threshold = rel;
      const double d = RuleDice(o, *val_samples, val);
      if (d > families[2].val) {
        families[2] = {o, d,
                       "density sigma " + std::to_string(sigma) + " rel " + std::to_string(rel)};
      }
    }
  }
  size_t best = 0;
  for (size_t i = 0; i < families.size(); ++i) {
    const double test_dice = RuleDice(families[i].options, *test_samples, test);
    std::printf("rule %-40s val Dice %.4f  test Dice %.4f\n", families[i].name.c_str(),
                families[i].val, test_dice);
    if (families[i].val > families[best].val) best = i;
  }
  double best_r = 1, best_disk = -1;
  for (double r = 1; r <= 30; r += 1) {
    const double d = DiskDice(val, r);
    if (d > best_disk) best_disk = d, best_r = r;
  }
  std::printf("disk baseline: best radius %.0f on val (%.4f), test Dice %.4f\n", best_r, best_disk,
              DiskDice(test, best_r));
  if (get("curve", "0") == "1") {
    auto many = segmenter->Sample(stack(test), 32, steps, 9);
    if (many.ok()) {
      for (int64_t k : {1, 2, 4, 8, 16, 32}) {
        std::printf("N=%lld test Dice %.4f (%s)\n", static_cast<long long>(k),
                    RuleDice(families[best].options, many->slice(1, 0, k), test),
                    families[best].name.c_str());
      }
    }
  }
  return 0;
}
