// ops/bench/replay_bench.cc — what one reload of the continuous trainer's replay costs on a real
// RocksDB store of N images (256x256 raw uint8, a click on every second one, a 64x64 grid):
// a full read (LoadReplay, what every reload cost before the cache) against a refresh of the
// ReplayCache after one image was touched (what a reload costs now). Prints figures only.
//   replay_bench --benchmark_filter=Touched
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "config/config.h"
#include "io/keys.h"
#include "io/store.h"
#include "learning/replay.h"
#include "schemas/events.pb.h"

namespace {

using clickdiff::Family;
using clickdiff::Store;

constexpr int64_t kGrid = 64;
constexpr int kSide = 256;

struct TempStore {
  std::filesystem::path dir;
  std::unique_ptr<Store> store;
  ~TempStore() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
};

std::string ImageKey(int64_t i) { return clickdiff::keys::Image("bench", std::to_string(i)); }

// A store of `n` images, every second one clicked once.
std::unique_ptr<TempStore> Filled(int64_t n) {
  auto temp = std::make_unique<TempStore>();
  temp->dir = std::filesystem::temp_directory_path() /
              ("clickdiff_replay_bench_" + std::to_string(::getpid()));
  std::filesystem::remove_all(temp->dir);
  clickdiff::StoreConfig config;
  config.path = temp->dir.string();
  temp->store = std::move(Store::Open(config).value());
  std::mt19937 rng(1);
  std::string payload(kSide * kSide, '\0');
  for (int64_t i = 0; i < n; ++i) {
    for (char& c : payload) c = static_cast<char>(rng());
    clickdiff::v1::StoredImage stored;
    clickdiff::v1::ImageEvent& event = *stored.mutable_event();
    event.set_dataset("bench");
    event.set_image_id(std::to_string(i));
    event.set_width(kSide);
    event.set_height(kSide);
    event.set_channels(1);
    event.set_pixel_type(clickdiff::v1::PIXEL_TYPE_UINT8);
    event.set_encoding(clickdiff::v1::PAYLOAD_ENCODING_RAW);
    event.set_payload(payload);
    stored.set_grid_resolution(kGrid);
    for (int64_t p = 0; p < kGrid * kGrid; ++p) stored.add_grid(static_cast<float>(p % 7) / 7);
    Store::Batch batch;
    batch.Put(Family::kImages, ImageKey(i), stored.SerializeAsString());
    if (i % 2 == 0) {
      clickdiff::v1::ClickEvent click;
      click.set_dataset("bench");
      click.set_image_id(std::to_string(i));
      click.set_click_id("c");
      click.set_x(kSide / 2);
      click.set_y(kSide / 2);
      click.set_class_id(1);
      click.set_positive(true);
      batch.Put(Family::kClicks, clickdiff::keys::Child(ImageKey(i), "c"),
                click.SerializeAsString());
    }
    if (!temp->store->Write(batch).ok()) std::abort();
  }
  return temp;
}

void BM_ReplayFullRead(benchmark::State& state) {
  auto temp = Filled(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(clickdiff::LoadReplay(*temp->store, kGrid, 2, 1).value());
  }
  state.counters["images"] = static_cast<double>(state.range(0));
}

void BM_ReplayRefreshOneTouched(benchmark::State& state) {
  auto temp = Filled(state.range(0));
  clickdiff::ReplayCache cache(kGrid, 2, 1);
  if (!cache.Refresh(*temp->store).ok()) std::abort();
  int64_t i = 0;
  for (auto _ : state) {
    cache.Touch(ImageKey(i++ % state.range(0)));
    benchmark::DoNotOptimize(cache.Refresh(*temp->store).value());
  }
  state.counters["images"] = static_cast<double>(state.range(0));
  state.counters["read"] = static_cast<double>(cache.last_read());
}

}  // namespace

BENCHMARK(BM_ReplayFullRead)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReplayRefreshOneTouched)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
