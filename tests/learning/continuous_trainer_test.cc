// The continuous trainer on a real store: what it replays, how it snapshots versions, and that
// samplers swapping versions under load never fail a request nor use a half-loaded model.
#include "learning/continuous_trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config/model_options.h"
#include "io/keys.h"
#include "learning/replay.h"
#include "learning/version_gate.h"
#include "model/checkpoint_store.h"
#include "model/preprocess.h"
#include "nodes/intake.h"
#include "nodes/sampler.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

constexpr int kGrid = 16;
constexpr int kChannels = 3;  // the default model.color (auto) in the service: RGB

template <typename Done>
bool WaitFor(Done done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

class ContinuousTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = testutil::OpenFreshStore("trainer", &dir_);
    versions_ = VersionStore(store_.get(), "tiny", 0);
    config_ = testutil::TinyModelConfig();
    config_.trainer.batch_size = 2;
    torch::set_num_threads(1);  // ctest runs suites side by side
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  model::Segmenter NewModel() const {
    return model::Segmenter::Create(SegmenterOptionsFrom(config_).value(), torch::kCPU).value();
  }

  // A 32x24 image on the grid: a bright square on a dark background; with a `region` (width > 0)
  // only that part of it is on the grid, as a crop to the content leaves it.
  void StoreImage(const std::string& id, int resolution = kGrid, model::ImageRegion region = {}) {
    v1::StoredImage image = testutil::StoredImageOnGrid(id, resolution, [](int x, int y) {
      return x >= 4 && x < 10 && y >= 5 && y < 11 ? 0.9f : 0.1f;
    });
    image.set_region_x(static_cast<uint32_t>(region.x));
    image.set_region_y(static_cast<uint32_t>(region.y));
    image.set_region_width(static_cast<uint32_t>(region.width));
    image.set_region_height(static_cast<uint32_t>(region.height));
    Put(Family::kImages, keys::Image("ds", id), image.SerializeAsString());
  }
  void StoreClick(const std::string& image, const std::string& id, int x, int y) {
    Put(Family::kClicks, keys::Child(keys::Image("ds", image), id),
        testutil::Click(image, id, x, y).SerializeAsString());
  }
  // A 32x24 dense label: a 12x8 rectangle of class 1, or all background with `empty`; with
  // `scribbles` a partial one: the rectangle's row 12 (class 1) and row 2 (background), 255 on the
  // rest.
  void StoreLabel(const std::string& image, const std::string& id, bool for_evaluation,
                  bool empty = false, bool scribbles = false) {
    v1::LabelEvent label;
    label.set_dataset("ds");
    label.set_image_id(image);
    label.set_label_id(id);
    label.set_for_evaluation(for_evaluation);
    std::string ids(32 * 24, '\0');
    for (int y = 8; y < 16 && !empty; ++y) {
      for (int x = 8; x < 20; ++x) ids[y * 32 + x] = 1;
    }
    for (int i = 0; i < 32 * 24 && scribbles; ++i) {
      if (i / 32 != 12 && i / 32 != 2) ids[i] = static_cast<char>(0xff);
    }
    label.mutable_dense()->set_width(32);
    label.mutable_dense()->set_height(24);
    label.mutable_dense()->set_class_ids(ids);
    Put(Family::kLabels, keys::Child(keys::Image("ds", image), id), label.SerializeAsString());
  }
  void Put(Family family, const std::string& key, const std::string& value) {
    Store::Batch batch;
    batch.Put(family, key, value);
    ASSERT_TRUE(store_->Write(batch).ok());
  }

  // A quick teacher: 4 samples of 2 steps, half the votes make a pixel confident, no ramp.
  static TeacherConfig QuickTeacher(TeacherMode mode, int images_per_round) {
    TeacherConfig t;
    t.enabled = true;
    t.mode = mode;
    t.ema_decay = 0.5;
    t.samples = 4;
    t.steps = 2;
    t.confidence = 0.5;
    t.ramp_steps = 0;
    t.images_per_round = images_per_round;
    return t;
  }

  // Trains a fresh model from `start_version` until the step budget is spent, stops, and checks
  // the trainer did not fail; `counters` gets its final counters. Call under
  // ASSERT_NO_FATAL_FAILURE.
  void TrainUntilWaiting(ModelSlot& slot, const ContinuousTrainerOptions& options,
                         uint64_t start_version, TrainerCounters* counters) {
    ContinuousTrainer trainer(Deps(slot), NewModel(), start_version, options, {});
    ASSERT_TRUE(trainer.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return trainer.counters().waiting; }));
    trainer.Stop();
    ASSERT_TRUE(trainer.failure().ok()) << trainer.failure().ToString();
    *counters = trainer.counters();
  }

  // Every parameter tensor of `got` equals `want`'s exactly.
  static void ExpectSameWeights(const model::Segmenter& got, const model::Segmenter& want) {
    std::vector<torch::Tensor> g = got.Parameters();
    std::vector<torch::Tensor> w = want.Parameters();
    ASSERT_EQ(g.size(), w.size());
    for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(torch::equal(g[i], w[i])) << "tensor " << i;
  }

  // Snapshots every `every_steps` steps, no step budget, no teacher.
  ContinuousTrainerOptions Options(int every_steps) const {
    ContinuousTrainerOptions o;
    o.trainer = config_.trainer;
    o.trainer.snapshot_every_steps = every_steps;
    o.trainer.snapshot_seconds = 1e9;
    o.trainer.steps_per_click = 0;
    o.teacher.enabled = false;
    o.teacher_memory_budget_mb = 64;
    o.run_steps = std::min(every_steps, 5);
    return o;
  }

  // The trainer's collaborators: the test's store, its versions (every one kept, so the tests can
  // load any; lineage "tiny") and `slot`.
  ContinuousTrainerDeps Deps(ModelSlot& slot) {
    return ContinuousTrainerDeps{store_.get(), &versions_, &slot, nullptr};
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  Config config_;
  VersionStore versions_{nullptr, "tiny", 0};  // on store_ once SetUp opened it
};

TEST_F(ContinuousTrainerTest, ReplayHoldsClickedAndLabelledImagesButNeverEvaluationLabels) {
  StoreImage("clicked");
  StoreClick("clicked", "c1", 10, 12);
  StoreClick("clicked", "c2", 12, 12);
  StoreImage("labelled");
  StoreLabel("labelled", "l1", /*for_evaluation=*/false);
  StoreClick("labelled", "c3", 10, 10);
  StoreImage("held_out");
  StoreLabel("held_out", "truth", /*for_evaluation=*/true);
  StoreImage("bare");
  StoreImage("other_grid", 8);
  StoreClick("other_grid", "c4", 1, 1);

  Result<Replay> replay = LoadReplay(*store_, kGrid, 2, kChannels);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  ASSERT_EQ(replay->examples.size(), 2u);
  EXPECT_EQ(replay->clicks, 3u);
  EXPECT_EQ(replay->labels, 1u);
  const ReplayExample& clicked = replay->examples[0];  // keys sort: "clicked" < "labelled"
  EXPECT_EQ(clicked.image_key, keys::Image("ds", "clicked"));
  EXPECT_EQ(clicked.revision, 2u);
  EXPECT_FALSE(clicked.example.dense);
  // The 32x24 image sits in a 32x32 square (4 rows of padding above): 2 image px per grid cell.
  auto [gx, gy] = model::MakeGridMapping(32, 24, kGrid).value().ToGrid(10, 12);
  EXPECT_EQ(clicked.example.target[gy][gx].item<int64_t>(), 1);
  EXPECT_EQ(clicked.example.target.sum().item<int64_t>(), 2);
  const ReplayExample& labelled = replay->examples[1];
  EXPECT_TRUE(labelled.example.dense);  // the dense label wins over its click
  EXPECT_EQ(labelled.revision, 2u);
  EXPECT_EQ(labelled.example.target.sum().item<int64_t>(), 6 * 4);  // 12x8 px = 6x4 cells
}

TEST_F(ContinuousTrainerTest, ReplayTrainsScribblesAsPartialLabelsAndADenseLabelBeforeThem) {
  StoreImage("scribbled");
  StoreLabel("scribbled", "scribbles", false, false, /*scribbles=*/true);
  StoreClick("scribbled", "c1", 10, 12);
  StoreImage("both");  // "scribbles" sorts after "dense": the full mask wins all the same
  StoreLabel("both", "dense", false);
  StoreLabel("both", "scribbles", false, false, /*scribbles=*/true);
  Result<Replay> replay = LoadReplay(*store_, kGrid, 2, kChannels);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  ASSERT_EQ(replay->examples.size(), 2u);
  EXPECT_EQ(replay->labels, 3u);
  const ReplayExample& both = replay->examples[0];
  EXPECT_TRUE(both.example.dense);
  EXPECT_EQ(both.example.target.sum().item<int64_t>(), 6 * 4);
  const ReplayExample& scribbled = replay->examples[1];
  EXPECT_TRUE(scribbled.example.partial);
  EXPECT_FALSE(scribbled.served.has_value());
  // Grid rows 8 (image row 12, 4 rows of padding above: 2 px a cell) and 3 (image row 2) are
  // known: 16 cells each; the stroke of class 1 covers 6 of them (x 8..19).
  EXPECT_EQ(scribbled.example.known.sum().item<int64_t>(), 16 + 16);
  EXPECT_EQ(scribbled.example.target.sum().item<int64_t>(), 6);
  auto [gx, gy] = model::MakeGridMapping(32, 24, kGrid).value().ToGrid(10, 12);
  EXPECT_EQ(scribbled.example.target[gy][gx].item<int64_t>(), 1);
  EXPECT_FALSE(scribbled.example.known[gy + 2][gx].item<bool>());
}

TEST_F(ContinuousTrainerTest, ScribblesOfACroppedImageCountOnlyInsideItsRegion) {
  // The scribbles mark rows 12 (class 1 at x 8..19, background elsewhere) and 2 (background).
  const model::ImageRegion lower{0, 8, 32, 16};  // rows 8..23: row 12 is in it, row 2 is not
  StoreImage("half", kGrid, lower);
  StoreLabel("half", "scribbles", false, false, /*scribbles=*/true);
  StoreImage("outside", kGrid, model::ImageRegion{0, 14, 32, 10});  // rows 14..23: neither
  StoreLabel("outside", "scribbles", false, false, /*scribbles=*/true);
  Result<Replay> replay = LoadReplay(*store_, kGrid, 2, kChannels);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  // Strokes that all lie outside the region mark nothing the model sees: no example.
  ASSERT_EQ(replay->examples.size(), 1u);
  const ReplayExample& half = replay->examples[0];
  EXPECT_EQ(half.image_key, keys::Image("ds", "half"));
  EXPECT_TRUE(half.example.partial);
  // The region's 32 px span the grid's 16 cells: row 12 is one grid row, 16 cells known, 6 of
  // them (x 8..19) class 1; row 2, outside, marks nothing.
  const model::GridMapping mapping = model::MakeGridMapping(32, 24, kGrid, lower).value();
  EXPECT_EQ(half.example.known.sum().item<int64_t>(), 16);
  EXPECT_EQ(half.example.target.sum().item<int64_t>(), 6);
  auto [gx, gy] = mapping.ToGrid(10, 12);
  EXPECT_EQ(gy, 6);  // (12 - 8) / 2 + 4 rows of padding above the 32x16 region in its square
  EXPECT_EQ(half.example.target[gy][gx].item<int64_t>(), 1);
  EXPECT_TRUE(half.example.known[gy].all().item<bool>());
}

TEST_F(ContinuousTrainerTest, ReplayCarriesTheMaskServedForAClickedImageWhenItFits) {
  // The 32x24 mask of a 12x8 rectangle (6x4 grid cells), as the mask cache stores it.
  auto served = [](const std::string& image, uint64_t revision, int width = 32) {
    v1::MaskResult mask;
    mask.set_dataset("ds");
    mask.set_image_id(image);
    mask.set_width(width);
    mask.set_height(24);
    std::string ids(static_cast<size_t>(width) * 24, '\0');
    for (int y = 8; y < 16; ++y) {
      for (int x = 8; x < 20; ++x) ids[y * width + x] = 1;
    }
    mask.set_mask(ids);
    mask.set_click_revision(revision);
    return mask.SerializeAsString();
  };
  for (const char* id : {"served", "no_clicks", "wrong_size", "bad_class", "corrupt", "labelled"}) {
    StoreImage(id);
    StoreClick(id, "c1", 10, 12);  // inside the mask's rectangle
  }
  Put(Family::kMasks, keys::Image("ds", "served"), served("served", 1));
  Put(Family::kMasks, keys::Image("ds", "no_clicks"), served("no_clicks", 0));
  Put(Family::kMasks, keys::Image("ds", "wrong_size"), served("wrong_size", 1, 30));
  v1::MaskResult three_classes;
  ASSERT_TRUE(three_classes.ParseFromString(served("bad_class", 1)));
  three_classes.mutable_mask()->at(0) = 2;  // the model has 2 classes
  Put(Family::kMasks, keys::Image("ds", "bad_class"), three_classes.SerializeAsString());
  Put(Family::kMasks, keys::Image("ds", "corrupt"), "not a mask");
  StoreLabel("labelled", "l1", /*for_evaluation=*/false);
  Put(Family::kMasks, keys::Image("ds", "labelled"), served("labelled", 1));

  ReplayCache cache(kGrid, 2, kChannels);
  Result<Replay> replay = cache.Refresh(*store_);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  ASSERT_EQ(replay->examples.size(), 6u);  // none left out for its mask
  EXPECT_EQ(replay->unreadable, 0u);
  std::map<std::string, const ReplayExample*> by_id;
  for (const ReplayExample& e : replay->examples) by_id[e.image_key] = &e;
  const ReplayExample& e = *by_id[keys::Image("ds", "served")];
  ASSERT_TRUE(e.served.has_value());
  // The rectangle's 6x4 cells, its click among them; the click stays the only known pixel.
  EXPECT_EQ(e.served->target.sum().item<int64_t>(), 6 * 4);
  EXPECT_TRUE(torch::equal(e.served->known, e.example.known));
  // Drawn before any click, not the image's size, a class the model lacks, unreadable, or beside
  // a dense label: none.
  for (const char* id : {"no_clicks", "wrong_size", "bad_class", "corrupt", "labelled"}) {
    EXPECT_FALSE(by_id[keys::Image("ds", id)]->served.has_value()) << id;
  }

  // A new mask (all background) touched as a mask is read again, alone; an untouched one is not.
  v1::MaskResult empty;
  ASSERT_TRUE(empty.ParseFromString(served("served", 2)));
  empty.set_mask(std::string(32 * 24, '\0'));
  Put(Family::kMasks, keys::Image("ds", "served"), empty.SerializeAsString());
  Put(Family::kMasks, keys::Image("ds", "no_clicks"), served("no_clicks", 1));
  cache.TouchMask(keys::Image("ds", "served"));
  replay = cache.Refresh(*store_);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_EQ(cache.last_read(), 0u) << "no image record read for a new mask";
  for (const ReplayExample& r : replay->examples) {
    if (r.image_key == keys::Image("ds", "served")) {
      ASSERT_TRUE(r.served.has_value());
      EXPECT_EQ(r.served->target.sum().item<int64_t>(), 1);  // the click alone
    }
    if (r.image_key == keys::Image("ds", "no_clicks")) {
      EXPECT_FALSE(r.served.has_value());
    }
  }
}

TEST_F(ContinuousTrainerTest, AServedMaskTakesItsShareOfTheClickedImagesWeight) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  ReplayExample e = LoadReplay(*store_, kGrid, 2, kChannels).value().examples.at(0);
  e.example.weight = 2;
  ASSERT_EQ(Taught(e, 0.5).size(), 1u) << "no served mask: the click map alone";
  e.served = e.example;
  e.served->target = torch::ones_like(e.example.target);
  std::vector<model::TrainingExample> half = Taught(e, 0.25);
  ASSERT_EQ(half.size(), 2u);
  EXPECT_DOUBLE_EQ(half[0].weight, 1.5);  // the click map
  EXPECT_EQ(half[0].target.sum().item<int64_t>(), 1);
  EXPECT_DOUBLE_EQ(half[1].weight, 0.5);  // its served version
  EXPECT_EQ(half[1].target.sum().item<int64_t>(), kGrid * kGrid);
  std::vector<model::TrainingExample> all = Taught(e, 1);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_DOUBLE_EQ(all[0].weight, 2);
  EXPECT_EQ(all[0].target.sum().item<int64_t>(), kGrid * kGrid);
  EXPECT_EQ(Taught(e, 0).size(), 1u);
  EXPECT_EQ(Taught(e, 0)[0].target.sum().item<int64_t>(), 1);
}

TEST(TeacherTest, ClickedMasksTakeTheRampedPseudoLabelWeightUpToAll) {
  TeacherConfig config;
  config.ramp_steps = 500;
  config.weight = 1;
  EXPECT_DOUBLE_EQ(Teacher(config, 64, nullptr).ClickedMaskShare(0), 0);
  EXPECT_DOUBLE_EQ(Teacher(config, 64, nullptr).ClickedMaskShare(250), 0.5);
  EXPECT_DOUBLE_EQ(Teacher(config, 64, nullptr).ClickedMaskShare(5000), 1);
  config.weight = 3;  // pseudo-labels may weigh more; a clicked image's training stays one share
  EXPECT_DOUBLE_EQ(Teacher(config, 64, nullptr).ClickedMaskShare(250), 1);
  config.clicked_masks = false;
  EXPECT_DOUBLE_EQ(Teacher(config, 64, nullptr).ClickedMaskShare(5000), 0);
  config.clicked_masks = true;
  config.enabled = false;
  EXPECT_DOUBLE_EQ(Teacher(config, 64, nullptr).ClickedMaskShare(5000), 0);
}

// The images of a replay with what each holds: "<key> <revision>" for a training example,
// "<key> pseudo <version>" / "<key> bare" for an unsupervised image; then the counts.
std::vector<std::string> Describe(const Replay& replay) {
  std::vector<std::string> out;
  for (const ReplayExample& e : replay.examples) {
    out.push_back(e.image_key + " " + std::to_string(e.revision) + " " +
                  std::to_string(e.example.target.sum().item<int64_t>()));
  }
  for (const UnsupervisedImage& u : replay.unsupervised) {
    out.push_back(u.image_key +
                  (u.for_student ? " pseudo " + std::to_string(u.for_student->version) : " bare"));
  }
  out.push_back(std::to_string(replay.clicks) + " clicks " + std::to_string(replay.labels) +
                " labels");
  return out;
}

TEST_F(ContinuousTrainerTest, ReplayCacheReadsAgainOnlyWhatWasTouchedAndMatchesAFullRead) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  StoreImage("b");
  StoreImage("c");
  ReplayCache cache(kGrid, 2, kChannels);
  auto refresh = [&](bool twin_labels = false) {
    Result<Replay> replay = cache.Refresh(*store_, twin_labels);
    EXPECT_TRUE(replay.ok()) << replay.status().ToString();
    return replay.ok() ? Describe(*replay) : std::vector<std::string>{};
  };
  auto full = [&] { return Describe(LoadReplay(*store_, kGrid, 2, kChannels).value()); };
  EXPECT_EQ(refresh(), full());
  EXPECT_EQ(cache.last_read(), 3u) << "the first refresh reads every image";
  EXPECT_EQ(refresh(), full());
  EXPECT_EQ(cache.last_read(), 0u) << "nothing touched, nothing read";

  // An untouched write stays unseen (so the test can tell a re-read from a cached entry) ...
  StoreClick("b", "c2", 8, 8);
  EXPECT_NE(refresh(), full());
  // ... until its image is touched: then only that image is read again.
  cache.Touch(keys::Image("ds", "b"));
  EXPECT_EQ(refresh(), full());
  EXPECT_EQ(cache.last_read(), 1u);
  EXPECT_EQ(full().back(), "2 clicks 0 labels");

  // A pseudo-label and a new image, each touched; a touch for an image not stored yet (a click
  // waiting for it) reads nothing.
  v1::PseudoLabel label = MakePseudoLabel(torch::ones({4, kGrid, kGrid}, torch::kLong), 2, 0.5, 7,
                                          v1::PseudoLabel::LABELLER_AVERAGE);
  Put(Family::kPseudoLabels, PseudoLabelKey(keys::Image("ds", "c"), Learner::kStudent),
      label.SerializeAsString());
  StoreImage("d");
  for (const char* id : {"c", "d", "not_yet"}) cache.Touch(keys::Image("ds", id));
  EXPECT_EQ(refresh(), full());
  EXPECT_EQ(cache.last_read(), 2u);
  EXPECT_EQ(full()[2], keys::Image("ds", "c") + " pseudo 7");

  // Reading the twin's labels too reads everything again, once; so does Invalidate.
  EXPECT_EQ(refresh(/*twin_labels=*/true), full());
  EXPECT_EQ(cache.last_read(), 4u);
  refresh(/*twin_labels=*/true);
  EXPECT_EQ(cache.last_read(), 0u);
  cache.Invalidate();
  EXPECT_EQ(refresh(/*twin_labels=*/true), full());
  EXPECT_EQ(cache.last_read(), 4u);
  refresh(/*twin_labels=*/true);
  EXPECT_EQ(cache.last_read(), 0u);

  // A corrupt image, and one whose grid is not finite, are left out and counted; the rest of the
  // replay is read as before, by a touch or a full read alike.
  const std::vector<std::string> before = full();
  Put(Family::kImages, keys::Image("ds", "e"), "not a stored image");
  v1::StoredImage poisoned = testutil::StoredImageOnGrid("f", kGrid, [](int, int) { return 0.5f; });
  poisoned.set_grid(3, std::numeric_limits<float>::quiet_NaN());
  Put(Family::kImages, keys::Image("ds", "f"), poisoned.SerializeAsString());
  StoreClick("f", "c1", 10, 12);
  for (const char* id : {"e", "f"}) cache.Touch(keys::Image("ds", id));
  Result<Replay> left_out = cache.Refresh(*store_, /*twin_labels=*/true);
  ASSERT_TRUE(left_out.ok()) << left_out.status().ToString();
  EXPECT_EQ(Describe(*left_out), before);
  EXPECT_EQ(left_out->unreadable, 2u);
  Result<Replay> all = LoadReplay(*store_, kGrid, 2, kChannels, /*twin_labels=*/true);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(Describe(*all), before);
  EXPECT_EQ(all->unreadable, 2u);
  // Repaired, an image counts again.
  StoreImage("e");
  cache.Touch(keys::Image("ds", "e"));
  Result<Replay> repaired = cache.Refresh(*store_, /*twin_labels=*/true);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(Describe(*repaired), full());
  EXPECT_EQ(repaired->unreadable, 1u);
}

TEST_F(ContinuousTrainerTest, AReplayOverItsBudgetHoldsPartAndEveryImageTakesItsTurn) {
  constexpr int kClicked = 40, kBare = 10, kImages = kClicked + kBare;
  auto key = [](int i) { return keys::Image("ds", "i" + std::to_string(100 + i)); };
  for (int i = 0; i < kImages; ++i) {
    StoreImage("i" + std::to_string(100 + i));
    if (i < kClicked) StoreClick("i" + std::to_string(100 + i), "c", 2 + (i % 12), 3);
  }
  constexpr uint64_t kBudget = 48 << 10;  // about 8 clicked images at 16 x 16 with 3 channels
  ReplayCache cache(kGrid, 2, kChannels, kBudget);
  size_t most_held = 0, last_held = 0;
  uint64_t clicks = kClicked;
  // Every image (clicked or not) that was in one of `refreshes` replays.
  auto turns = [&](int refreshes) {
    std::set<std::string> seen;
    for (int refresh = 0; refresh < refreshes; ++refresh) {
      Result<Replay> replay = cache.Refresh(*store_);
      EXPECT_TRUE(replay.ok()) << replay.status().ToString();
      if (!replay.ok()) break;
      const size_t held = replay->examples.size() + replay->unsupervised.size();
      EXPECT_GT(held, 0u);
      EXPECT_EQ(held + replay->waiting, static_cast<size_t>(kImages));
      EXPECT_EQ(replay->clicks, clicks) << "waiting images' clicks count";
      EXPECT_LE(cache.held_bytes(), kBudget);
      most_held = std::max(most_held, held);
      last_held = held;
      for (const ReplayExample& e : replay->examples) seen.insert(e.image_key);
      for (const UnsupervisedImage& u : replay->unsupervised) seen.insert(u.image_key);
    }
    return seen;
  };
  EXPECT_EQ(turns(40).size(), static_cast<size_t>(kImages)) << "some image never had a turn";
  EXPECT_LT(most_held, static_cast<size_t>(kClicked)) << "the budget held everything";

  // Every image touched at once (a flood between two reloads): the budget holds while they are
  // read, give or take the 16 read between two checks; then they take turns as before.
  const uint64_t entry_bytes = cache.held_bytes() / last_held + 1;
  for (int i = 0; i < kImages; ++i) cache.Touch(key(i));
  ASSERT_TRUE(cache.Refresh(*store_).ok());
  EXPECT_EQ(cache.last_read(), static_cast<uint64_t>(kImages) + 8);  // and 8 turns
  EXPECT_LE(cache.peak_held_bytes(), kBudget + (17 * entry_bytes));
  EXPECT_LE(cache.held_bytes(), kBudget);
  EXPECT_EQ(turns(40).size(), static_cast<size_t>(kImages)) << "turns stopped after the flood";

  // A new click on a waiting image is read at once, and counted.
  StoreClick("i145", "c", 5, 5);  // one of the unclicked ones
  cache.Touch(key(45));
  clicks = kClicked + 1;
  Result<Replay> replay = cache.Refresh(*store_);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_EQ(replay->clicks, clicks);
  EXPECT_TRUE(std::any_of(replay->examples.begin(), replay->examples.end(),
                          [&](const ReplayExample& e) { return e.image_key == key(45); }));
  EXPECT_EQ(turns(40).size(), static_cast<size_t>(kImages));

  // Unlimited, the same store is one replay of everything, as a full read.
  ReplayCache unlimited(kGrid, 2, kChannels);
  Result<Replay> all = unlimited.Refresh(*store_);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->waiting, 0u);
  EXPECT_EQ(Describe(*all), Describe(LoadReplay(*store_, kGrid, 2, kChannels).value()));
}

TEST_F(ContinuousTrainerTest, GateRefusesSnapshotsThatDoWorseOnTheHeldOutImages) {
  // Two images the gate holds out keep their true label; the four it trains on are labelled all
  // background (the same picture), so training makes the model worse on the held-out ones.
  ContinuousTrainerOptions options = Options(10);
  options.trainer.held_out = 0.34;
  options.trainer.held_out_images = 8;
  VersionGateOptions picking;
  picking.share = options.trainer.held_out;
  picking.seed = options.trainer.seed;
  const VersionGate picker(picking);
  std::vector<std::string> held, trained;
  for (int i = 0; held.size() < 2 || trained.size() < 4; ++i) {
    const std::string id = "img" + std::to_string(i);
    const bool eligible = picker.Eligible(keys::Image("ds", id));
    if (eligible && held.size() < 2) {
      held.push_back(id);
      StoreImage(id);
      StoreLabel(id, "truth", /*for_evaluation=*/false);
    } else if (!eligible && trained.size() < 4) {
      trained.push_back(id);
      StoreImage(id);
      StoreLabel(id, "wrong", /*for_evaluation=*/false, /*empty=*/true);
    }
  }
  // The start (the served version) learnt the held-out images' truth.
  std::vector<model::TrainingExample> truth;
  const Replay replay = LoadReplay(*store_, kGrid, 2, kChannels).value();
  for (const ReplayExample& e : replay.examples) {
    for (const std::string& id : held) {
      if (e.image_key == keys::Image("ds", id)) truth.push_back(e.example);
    }
  }
  ASSERT_EQ(truth.size(), 2u);
  model::Segmenter start = NewModel();
  ASSERT_TRUE(testutil::Pretrain(start, truth));
  auto held_out_loss = [&](model::Segmenter& m) {
    return m.HeldOutLoss(truth, options.trainer.batch_size, 4, options.trainer.seed).value();
  };
  const float start_loss = held_out_loss(start);

  ModelSlot slot;
  ContinuousTrainer trainer(Deps(slot), std::move(start), 1, options, {});
  ASSERT_TRUE(trainer.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return trainer.counters().refused >= 2; }));
  trainer.Stop();
  ASSERT_TRUE(trainer.failure().ok()) << trainer.failure().ToString();
  EXPECT_EQ(trainer.counters().held_out, 2u);
  // Whatever was published does no worse on the held-out images than the tolerance allows.
  if (std::shared_ptr<const ServingModel> served = slot.Get()) {
    model::Segmenter copy =
        model::CheckpointStore::Copy(*served->segmenter, "served", torch::kCPU).value();
    EXPECT_LE(held_out_loss(copy), (1 + options.trainer.held_out_tolerance) * start_loss)
        << "version " << served->version;
  }
}

TEST_F(ContinuousTrainerTest, NothingToLearnFromMeansNoNewVersion) {
  StoreImage("bare");
  ModelSlot slot;
  ContinuousTrainer trainer(Deps(slot), NewModel(), 0, Options(1), {});
  ASSERT_TRUE(trainer.Start().ok());
  // Three passes of the loop that found nothing to train on.
  ASSERT_TRUE(WaitFor([&] { return trainer.counters().passes >= 3; }));
  trainer.Stop();
  EXPECT_EQ(trainer.counters().version, 0u);
  EXPECT_EQ(slot.Get(), nullptr);
  EXPECT_TRUE(trainer.failure().ok());
}

TEST_F(ContinuousTrainerTest, SnapshotsNumberedVersionsToTheStoreAndTheSlotInOrder) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  ModelSlot slot;
  std::mutex mu;
  std::vector<uint64_t> announced;
  ContinuousTrainer trainer(Deps(slot), NewModel(), 4, Options(3), [&](uint64_t v) {
    std::lock_guard<std::mutex> lock(mu);
    announced.push_back(v);
  });
  ASSERT_TRUE(trainer.Start().ok());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (trainer.counters().version < 6 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  trainer.Stop();
  ASSERT_TRUE(trainer.failure().ok()) << trainer.failure().ToString();
  const uint64_t last = trainer.counters().version;
  ASSERT_GE(last, 6u);
  EXPECT_GE(trainer.counters().steps, 6);
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(announced.size(), last - 4);
    for (size_t i = 0; i < announced.size(); ++i) EXPECT_EQ(announced[i], 5 + i);
  }
  EXPECT_EQ(slot.Get()->version, last);
  for (uint64_t v = 5; v <= last; ++v) {
    EXPECT_TRUE(store_->Get(Family::kModels, VersionStore::ModelKey(v)).value().has_value());
  }
  // What a restart loads is the last version, and it samples exactly like the one in the slot.
  Result<StoredVersions> latest = VersionStore(store_.get(), "tiny", 0).LoadLatest(torch::kCPU);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  ASSERT_TRUE(latest->model.has_value());
  EXPECT_EQ(latest->model->version, last);
  EXPECT_EQ(latest->newest, last);
  torch::Tensor image = torch::rand({1, kChannels, kGrid, kGrid});
  EXPECT_TRUE(torch::equal(latest->model->segmenter->Sample(image, 3, 2, 7).value(),
                           slot.Get()->segmenter->Sample(image, 3, 2, 7).value()));
  // Another model's service does not resume these versions, but learns their number.
  Result<StoredVersions> other = VersionStore(store_.get(), "other", 0).LoadLatest(torch::kCPU);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->model.has_value());
  EXPECT_EQ(other->newest, last);
}

// Waits up to two minutes for `done`.
TEST_F(ContinuousTrainerTest, StepBudgetPerClickStopsTrainingUntilMoreClicksArrive) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  StoreImage("b");
  ModelSlot slot;
  ContinuousTrainerOptions options = Options(4);
  options.trainer.steps_per_click = 6;
  options.start_steps = 2;  // resumed from a version trained 2 steps: 4 are left for the click
  ContinuousTrainer trainer(Deps(slot), NewModel(), 0, options, {});
  ASSERT_TRUE(trainer.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return trainer.counters().waiting; }));
  EXPECT_EQ(trainer.counters().steps, 6);
  // The last steps became a version before the trainer started waiting, and it stays put for
  // three more passes of the loop.
  EXPECT_EQ(trainer.counters().version, 1u);
  const uint64_t passes = trainer.counters().passes;
  ASSERT_TRUE(WaitFor([&] { return trainer.counters().passes >= passes + 3; }));
  EXPECT_EQ(trainer.counters().steps, 6);
  EXPECT_EQ(trainer.counters().version, 1u);

  // A corrective click on the same image: 6 more steps (4 to the next snapshot, then 2).
  StoreClick("a", "c2", 8, 8);
  trainer.Touch(keys::Image("ds", "a"));  // as intake does after writing it
  ASSERT_TRUE(
      WaitFor([&] { return trainer.counters().waiting && trainer.counters().version == 3; }));
  trainer.Stop();
  ASSERT_TRUE(trainer.failure().ok()) << trainer.failure().ToString();
  EXPECT_EQ(trainer.counters().steps, 12);
  // A restart resumes the spent budget with the version.
  Result<StoredVersions> latest = VersionStore(store_.get(), "tiny", 0).LoadLatest(torch::kCPU);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(latest->model->version, 3u);
  EXPECT_EQ(latest->steps, 12);
}

TEST_F(ContinuousTrainerTest, TeacherPseudoLabelsUnsupervisedImagesInRoundsLongestAgoFirst) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  StoreImage("b");
  StoreImage("c");
  StoreImage("held_out");
  StoreLabel("held_out", "truth", /*for_evaluation=*/true);  // still unsupervised
  ModelSlot slot;
  ContinuousTrainerOptions options = Options(2);
  options.trainer.steps_per_click = 8;  // pseudo-labels do not add to the budget
  options.teacher = QuickTeacher(TeacherMode::kEma, 2);
  // A twin left by an earlier run in twin mode is stale once this lineage moves on without it.
  Put(Family::kModels, VersionStore::kTwinKey, "stale");
  Put(Family::kMetadata, VersionStore::kTwinVersionKey, "0");
  TrainerCounters counters;
  ASSERT_NO_FATAL_FAILURE(TrainUntilWaiting(slot, options, 0, &counters));
  EXPECT_EQ(counters.steps, 8);
  EXPECT_EQ(counters.version, 4u);
  EXPECT_FALSE(store_->Get(Family::kModels, VersionStore::kTwinKey).value().has_value());
  EXPECT_FALSE(store_->Get(Family::kMetadata, VersionStore::kTwinVersionKey).value().has_value());

  // Four rounds of two images over three unsupervised ones, never labelled or labelled longest ago
  // first (ties in key order): b, c (v1); held_out, b (v2); c, b (v3); held_out, b (v4).
  std::map<std::string, uint64_t> drawn_by;
  for (const char* id : {"b", "c", "held_out"}) {
    auto bytes = store_->Get(Family::kPseudoLabels, keys::Image("ds", id)).value();
    ASSERT_TRUE(bytes.has_value()) << id;
    v1::PseudoLabel label;
    ASSERT_TRUE(label.ParseFromString(*bytes));
    EXPECT_EQ(label.grid_resolution(), static_cast<uint32_t>(kGrid));
    EXPECT_EQ(label.class_ids().size(), static_cast<size_t>(kGrid * kGrid));
    EXPECT_EQ(label.samples(), 4u);
    EXPECT_EQ(label.labeller(), v1::PseudoLabel::LABELLER_AVERAGE);
    drawn_by[id] = label.teacher_version();
    EXPECT_FALSE(
        store_->Get(Family::kPseudoLabels, PseudoLabelKey(keys::Image("ds", id), Learner::kTwin))
            .value()
            .has_value());
  }
  EXPECT_EQ(drawn_by, (std::map<std::string, uint64_t>{{"b", 4}, {"c", 3}, {"held_out", 4}}));
  EXPECT_FALSE(store_->Get(Family::kPseudoLabels, keys::Image("ds", "a")).value().has_value());

  // The replay offers them as non-dense examples whose known pixels are the confident ones.
  Result<Replay> replay = LoadReplay(*store_, kGrid, 2, kChannels);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  ASSERT_EQ(replay->unsupervised.size(), 3u);
  for (const UnsupervisedImage& u : replay->unsupervised) {
    ASSERT_TRUE(u.for_student.has_value()) << u.image_key;
    EXPECT_FALSE(u.for_student->example.dense);
    EXPECT_EQ(u.for_student->example.known.scalar_type(), torch::kBool);
    EXPECT_EQ(u.for_student->version, drawn_by[u.image_key.substr(3)]);
    EXPECT_FALSE(u.for_twin.has_value());
  }
}

// Paper 004's co-training: a twin initialised on its own trains on the same clicks, the twin labels
// for the student and the student for the twin, and the twin is stored with each version.
TEST_F(ContinuousTrainerTest, TwinTeacherCoTrainsAndEachLabelsForTheOther) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  StoreImage("b");
  StoreImage("c");
  ModelSlot slot;
  ContinuousTrainerOptions options = Options(2);
  options.trainer.steps_per_click = 6;
  options.start_untrained = true;
  options.teacher = QuickTeacher(TeacherMode::kTwin, 1);
  TrainerCounters counters;
  ASSERT_NO_FATAL_FAILURE(TrainUntilWaiting(slot, options, 0, &counters));
  EXPECT_EQ(counters.version, 3u);

  // Three rounds of one image over two, each direction on its own schedule: b (v1), c (v2), b (v3).
  for (Learner learner : {Learner::kStudent, Learner::kTwin}) {
    for (auto [id, version] : {std::pair{"b", 3u}, std::pair{"c", 2u}}) {
      auto bytes =
          store_->Get(Family::kPseudoLabels, PseudoLabelKey(keys::Image("ds", id), learner))
              .value();
      ASSERT_TRUE(bytes.has_value()) << id;
      v1::PseudoLabel label;
      ASSERT_TRUE(label.ParseFromString(*bytes));
      EXPECT_EQ(label.teacher_version(), version) << id;
      EXPECT_EQ(label.labeller(), learner == Learner::kStudent ? v1::PseudoLabel::LABELLER_TWIN
                                                               : v1::PseudoLabel::LABELLER_STUDENT);
    }
  }
  Result<Replay> replay = LoadReplay(*store_, kGrid, 2, kChannels, /*twin_labels=*/true);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  for (const UnsupervisedImage& u : replay->unsupervised) {
    EXPECT_TRUE(u.for_student.has_value() && u.for_twin.has_value()) << u.image_key;
  }

  // The stored twin is a network of its own: not the served average, and trained away from its
  // own initialisation.
  auto twin_bytes = store_->Get(Family::kModels, VersionStore::kTwinKey).value();
  ASSERT_TRUE(twin_bytes.has_value());
  EXPECT_EQ(store_->Get(Family::kMetadata, VersionStore::kTwinVersionKey).value(), "3");
  model::Segmenter twin =
      model::CheckpointStore::FromBytes(*twin_bytes, "twin", torch::kCPU).value();
  // The student's label of b at version 3 is the stored twin's vote: nothing trains between the
  // snapshot that stored the twin and the round it labels in.
  const std::string b = keys::Image("ds", "b");
  auto stored_b = store_->Get(Family::kPseudoLabels, b).value();
  ASSERT_TRUE(stored_b.has_value());
  v1::PseudoLabel label_b;
  ASSERT_TRUE(label_b.ParseFromString(*stored_b));
  const UnsupervisedImage* image_b = nullptr;
  for (const UnsupervisedImage& u : replay->unsupervised) {
    if (u.image_key == b) image_b = &u;
  }
  ASSERT_NE(image_b, nullptr);
  torch::Tensor votes =
      twin.Sample(image_b->grid.unsqueeze(0), 4, 2, std::hash<std::string>{}(b) ^ (3ull << 32), 64)
          .value();
  v1::PseudoLabel redrawn = MakePseudoLabel(votes[0], 2, 0.5, 3, v1::PseudoLabel::LABELLER_TWIN);
  EXPECT_EQ(redrawn.class_ids(), label_b.class_ids());
  EXPECT_EQ(redrawn.confident(), label_b.confident());
  model::SegmenterOptions own = NewModel().options();
  own.seed ^= 0x9E3779B97F4A7C15ull;
  model::Segmenter twin_init = model::Segmenter::Create(own, torch::kCPU).value();
  auto differs = [](const model::Segmenter& x, const model::Segmenter& y) {
    std::vector<torch::Tensor> xs = x.Parameters();
    std::vector<torch::Tensor> ys = y.Parameters();
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!torch::allclose(xs[i], ys[i])) return true;
    }
    return false;
  };
  std::shared_ptr<const ServingModel> served = slot.Get();
  ASSERT_TRUE(served);
  EXPECT_TRUE(differs(twin, *served->segmenter));
  EXPECT_TRUE(differs(twin, twin_init));
  EXPECT_EQ(twin.Parameters().size(), twin_init.Parameters().size());
}

// A restart resumes the twin stored with the version it restarts from, and only that one. With a
// learning rate of 0 training leaves weights as they are, so the twin stored with the next version
// shows which twin the trainer started with.
TEST_F(ContinuousTrainerTest, RestartResumesTheTwinStoredWithItsVersionOnly) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  StoreImage("b");
  model::SegmenterOptions other = NewModel().options();
  other.seed = 777;
  const std::string stored =
      model::CheckpointStore::ToBytes(model::Segmenter::Create(other, torch::kCPU).value()).value();
  model::SegmenterOptions own = NewModel().options();
  own.seed ^= 0x9E3779B97F4A7C15ull;  // what a twin initialised on its own gets
  const std::string fresh =
      model::CheckpointStore::ToBytes(model::Segmenter::Create(own, torch::kCPU).value()).value();
  for (const char* stored_with : {"5", "4"}) {
    Put(Family::kModels, VersionStore::kTwinKey, stored);
    Put(Family::kMetadata, VersionStore::kTwinVersionKey, stored_with);
    ModelSlot slot;
    ContinuousTrainerOptions options = Options(2);
    options.trainer.learning_rate = 0;
    options.trainer.steps_per_click = 2;
    options.start_untrained = true;
    options.teacher = QuickTeacher(TeacherMode::kTwin, 1);
    TrainerCounters counters;
    ASSERT_NO_FATAL_FAILURE(TrainUntilWaiting(slot, options, 5, &counters));
    EXPECT_EQ(counters.version, 6u);
    EXPECT_EQ(store_->Get(Family::kMetadata, VersionStore::kTwinVersionKey).value(), "6");
    const std::string now = store_->Get(Family::kModels, VersionStore::kTwinKey).value().value();
    const std::string& expected = std::string(stored_with) == "5" ? stored : fresh;
    SCOPED_TRACE(std::string("twin stored with version ") + stored_with);
    ExpectSameWeights(model::CheckpointStore::FromBytes(now, "now", torch::kCPU).value(),
                      model::CheckpointStore::FromBytes(expected, "want", torch::kCPU).value());
  }
}

// With several serving devices each version carries a copy per device (here two CPU "devices"),
// whole before it is served, and sampler shards take the copies in turn.
TEST_F(ContinuousTrainerTest, VersionsCarryAReplicaPerServingDevice) {
  StoreImage("a");
  StoreClick("a", "c1", 10, 12);
  ModelSlot slot;
  ContinuousTrainerOptions options = Options(2);
  options.trainer.steps_per_click = 2;
  options.serving_devices = {torch::kCPU, torch::kCPU};
  TrainerCounters counters;
  ASSERT_NO_FATAL_FAILURE(TrainUntilWaiting(slot, options, 0, &counters));
  std::shared_ptr<const ServingModel> served = slot.Get();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->version, 1u);
  ASSERT_EQ(served->replicas.size(), 1u);
  EXPECT_EQ(&served->ForShard(0), served->segmenter.get());
  EXPECT_EQ(&served->ForShard(1), served->replicas[0].get());
  EXPECT_EQ(&served->ForShard(2), served->segmenter.get());
  ExpectSameWeights(*served->replicas[0], *served->segmenter);
}

TEST(PseudoLabelTest, MajorityClassAndConfidentPixelsFromTheVote) {
  // Four samples of a 2x2 grid; pixel votes: (1,1,1,1) (1,1,1,0) (0,0,0,0) (0,0,0,1).
  torch::Tensor samples =
      torch::tensor({1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1}, torch::kInt64)
          .view({4, 2, 2});
  v1::PseudoLabel label = MakePseudoLabel(samples, 2, 0.75, 9, v1::PseudoLabel::LABELLER_AVERAGE);
  EXPECT_EQ(label.teacher_version(), 9u);
  EXPECT_EQ(label.grid_resolution(), 2u);
  EXPECT_EQ(label.samples(), 4u);
  EXPECT_EQ(label.class_ids(), std::string({1, 1, 0, 0}));
  EXPECT_EQ(label.confident(), std::string({1, 1, 1, 1}));  // 3 of 4 reaches 0.75
  EXPECT_EQ(MakePseudoLabel(samples, 2, 0.9, 9, v1::PseudoLabel::LABELLER_AVERAGE).confident(),
            std::string({1, 0, 1, 0}));
}

TEST_F(ContinuousTrainerTest, SwappingVersionsUnderLoadDropsNoRequestAndServesOnlyWholeModels) {
  StoreImage("a");
  StoreImage("b");
  StoreClick("a", "c1", 10, 12);
  ModelSlot slot;
  auto first = std::make_shared<ServingModel>();
  first->segmenter = std::make_shared<model::Segmenter>(NewModel());
  slot.Set(first);
  MaskCache cache(store_.get());  // empty: every request samples
  InferRequestGate gate;
  Sampler sampler(store_.get(), &slot, &gate, &cache, testutil::SamplerSettings(3, 2, 64));

  ContinuousTrainer trainer(
      Deps(slot),
      model::CheckpointStore::FromBytes(model::CheckpointStore::ToBytes(*first->segmenter).value(),
                                        "first", torch::kCPU)
          .value(),
      0, Options(1), {});
  ASSERT_TRUE(trainer.Start().ok());
  std::atomic<int> failures{0};
  std::mutex mu;
  std::vector<SampleSet> results;
  std::vector<std::thread> load;
  for (const char* id : {"a", "b"}) {
    load.emplace_back([&, id] {
      uint64_t seen = 0;
      const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      for (int i = 0;
           (i < 25 || trainer.counters().version < 3) && std::chrono::steady_clock::now() < end;
           ++i) {
        Result<SampleSet> set = sampler(RequestFor("ds", id));
        if (!set.ok() || set->model_version < seen) {
          failures.fetch_add(1);
          continue;
        }
        seen = set->model_version;
        std::lock_guard<std::mutex> lock(mu);
        results.push_back(std::move(set).value());
      }
    });
  }
  for (std::thread& t : load) t.join();
  trainer.Stop();
  ASSERT_TRUE(trainer.failure().ok()) << trainer.failure().ToString();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_GE(results.size(), 50u);

  // Each result is exactly what the whole model of its version draws for that request.
  std::map<uint64_t, std::unique_ptr<ModelSlot>> versions;
  for (const SampleSet& r : results) {
    std::unique_ptr<ModelSlot>& replay_slot = versions[r.model_version];
    if (!replay_slot) {
      auto model = std::make_shared<ServingModel>();
      model->version = r.model_version;
      if (r.model_version == 0) {
        model->segmenter = first->segmenter;
      } else {
        auto bytes = store_->Get(Family::kModels, VersionStore::ModelKey(r.model_version)).value();
        ASSERT_TRUE(bytes.has_value()) << r.model_version;
        model->segmenter = std::make_shared<model::Segmenter>(
            model::CheckpointStore::FromBytes(*bytes, "v", torch::kCPU).value());
      }
      replay_slot = std::make_unique<ModelSlot>();
      replay_slot->Set(model);
    }
    Sampler again(store_.get(), replay_slot.get(), &gate, &cache,
                  testutil::SamplerSettings(3, 2, 64));
    Result<SampleSet> redrawn = again(r.request);
    ASSERT_TRUE(redrawn.ok());
    EXPECT_TRUE(torch::equal(redrawn->samples, r.samples))
        << r.request.image_id << " at version " << r.model_version;
  }
  EXPECT_GE(versions.size(), 3u) << "versions were not swapped in while the samplers ran";
}

TEST(StoredGridTest, GivesTheModelTheChannelsItTakes) {
  // A colour record: R = 1, G = 0, B = 0.5 everywhere on a 2x2 grid.
  v1::StoredImage colour = testutil::StoredImageOnGrid("c", 2, [](int, int) { return 1.0f; });
  for (float v : {0.0f, 0.0f, 0.0f, 0.0f, 0.5f, 0.5f, 0.5f, 0.5f}) colour.add_grid(v);
  colour.set_grid_channels(3);
  Result<torch::Tensor> rgb = StoredGrid(colour, 3);
  ASSERT_TRUE(rgb.ok()) << rgb.status().ToString();
  EXPECT_EQ(rgb->sizes(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_FLOAT_EQ((*rgb)[2][1][1].item<float>(), 0.5f);
  Result<torch::Tensor> gray = StoredGrid(colour, 1);
  ASSERT_TRUE(gray.ok()) << gray.status().ToString();
  EXPECT_NEAR((*gray)[0][0][0].item<float>(), 0.2126f + 0.5f * 0.0722f, 1e-6);

  // A record from before colour (grid_channels unset) is gray: repeated for an RGB model.
  v1::StoredImage old = testutil::StoredImageOnGrid("o", 2, [](int x, int) { return x * 0.5f; });
  Result<torch::Tensor> repeated = StoredGrid(old, 3);
  ASSERT_TRUE(repeated.ok()) << repeated.status().ToString();
  EXPECT_FLOAT_EQ((*repeated)[1][0][1].item<float>(), 0.5f);

  colour.add_grid(0.0f);  // one value too many
  Result<torch::Tensor> broken = StoredGrid(colour, 3);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace clickdiff
