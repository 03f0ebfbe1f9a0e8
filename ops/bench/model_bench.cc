// ops/bench/model_bench.cc — throughput of the model with its default options: one training step
// (batch 8) and sampling N = 16 label maps of one image, per method. Prints figures only.
//   model_bench --benchmark_filter=Sample   (threads: BENCH_THREADS, default 1)
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <vector>

#include "model/segmenter.h"
#include "model/synthetic.h"

namespace cm = clickdiff::model;

namespace {

void SetThreads() {
  const char* env = std::getenv("BENCH_THREADS");
  torch::set_num_threads(env ? std::atoi(env) : 1);
}

cm::Segmenter Make(cm::Method method) {
  cm::SegmenterOptions options;
  options.method = method;
  return std::move(cm::Segmenter::Create(options, torch::kCPU).value());
}

void BM_TrainStep(benchmark::State& state) {
  SetThreads();
  auto segmenter = Make(static_cast<cm::Method>(state.range(0)));
  std::vector<cm::TrainingExample> batch;
  for (const auto& s : cm::GenerateSynthetic(cm::SyntheticOptions{}, 8, 1)) {
    batch.push_back(cm::MakeClickExample(s.image, s.clicks, 2).value());
  }
  torch::optim::Adam adam(segmenter.Parameters(), torch::optim::AdamOptions(1e-3));
  for (auto _ : state) benchmark::DoNotOptimize(segmenter.TrainStep(batch, adam).value());
  state.SetLabel(cm::MethodName(segmenter.options().method));
  state.counters["steps/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

void BM_Sample16(benchmark::State& state) {
  SetThreads();
  auto segmenter = Make(static_cast<cm::Method>(state.range(0)));
  const int64_t steps = state.range(1);
  const auto image = cm::GenerateSynthetic(cm::SyntheticOptions{}, 1, 2)[0].image.unsqueeze(0);
  for (auto _ : state) benchmark::DoNotOptimize(segmenter.Sample(image, 16, steps, 3).value());
  state.SetLabel(std::string(cm::MethodName(segmenter.options().method)) +
                 " evals/sample=" + std::to_string(segmenter.NetworkEvaluations(steps)));
  state.counters["images/s"] = benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_TrainStep)
    ->Arg(static_cast<int>(cm::Method::kD3pm))
    ->Arg(static_cast<int>(cm::Method::kGaussianX0))
    ->Arg(static_cast<int>(cm::Method::kUNet))
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Sample16)
    ->Args({static_cast<int>(cm::Method::kD3pm), 0})
    ->Args({static_cast<int>(cm::Method::kD3pm), 20})
    ->Args({static_cast<int>(cm::Method::kGaussianX0), 0})
    ->Args({static_cast<int>(cm::Method::kUNet), 0})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

BENCHMARK_MAIN();
