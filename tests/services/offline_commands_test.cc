// The offline commands end to end on a small generated data set, and their handling of bad input:
// every problem stops the command with a message naming the file (and line), nothing is skipped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "io/image_codec.h"
#include "model/checkpoint_store.h"
#include "tests/services/run_cli.h"

namespace clickdiff {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using testutil::CliRun;

CliRun Cli(std::vector<std::string> args) { return testutil::RunClickdiff(std::move(args)); }

// A tiny model keeps these tests to seconds.
const std::vector<std::string> kSmallModel = {
    "--set", "model.resolution=32",    "--set", "model.levels=3",
    "--set", "model.base_channels=8",  "--set", "model.encoder_channels=8",
    "--set", "model.d3pm.steps=10",    "--set", "trainer.batch_size=4",
    "--set", "compute.torch_threads=1"};

std::vector<std::string> With(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

class OfflineCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::path(::testing::TempDir()) /
        ("offline_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    CliRun g = Cli({"generate", "--out", dir_.string(), "--count", "6", "--size", "40"});
    ASSERT_EQ(g.code, 0) << g.err;
  }

  std::string Path(const std::string& relative) const { return (dir_ / relative).string(); }

  std::vector<std::string> ReadLines(const std::string& relative) const {
    std::ifstream in(Path(relative));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  void WriteLines(const std::string& relative, const std::vector<std::string>& lines) const {
    std::ofstream out(Path(relative));
    for (const auto& l : lines) out << l << "\n";
  }

  CliRun Train(const std::string& clicks, const std::string& masks = "") const {
    std::vector<std::string> args = {"train",   "--images", Path("images"), "--out", Path("m.pt"),
                                     "--steps", "2"};
    if (!clicks.empty()) args = With(args, {"--clicks", clicks});
    if (!masks.empty()) args = With(args, {"--masks", masks});
    return Cli(With(args, kSmallModel));
  }

  fs::path dir_;
};

TEST_F(OfflineCommandsTest, GenerateTrainInferEvalRunEndToEnd) {
  ASSERT_EQ(ReadLines("clicks.jsonl").size(), 6u);  // one organ, one click per image
  CliRun train = Train(Path("clicks.jsonl"));
  ASSERT_EQ(train.code, 0) << train.err;
  EXPECT_EQ(nlohmann::json::parse(train.out)["steps"], 2);
  ASSERT_TRUE(fs::exists(Path("m.pt")));

  CliRun infer = Cli(With({"infer", "--model", Path("m.pt"), "--images", Path("images"), "--out",
                           Path("pred"), "--samples", "3"},
                          {"--set", "compute.torch_threads=1"}));
  ASSERT_EQ(infer.code, 0) << infer.err;
  nlohmann::json summary = nlohmann::json::parse(infer.out);
  EXPECT_EQ(summary["images"], 6);
  EXPECT_EQ(summary["network_evaluations_per_sample"], 10);
  EXPECT_TRUE(fs::exists(Path("pred/synthetic_0000.png")));
  EXPECT_TRUE(fs::exists(Path("pred/uncertainty/synthetic_0000.png")));

  CliRun eval = Cli({"eval", "--pred", Path("pred"), "--truth", Path("truth")});
  ASSERT_EQ(eval.code, 0) << eval.err;
  nlohmann::json scores = nlohmann::json::parse(eval.out);
  EXPECT_EQ(scores["images"], 6);
  ASSERT_EQ(scores["classes"].size(), 1u);
  double dice = scores["mean"]["dice"];
  EXPECT_GE(dice, 0.0);
  EXPECT_LE(dice, 1.0);
}

TEST_F(OfflineCommandsTest, SaveAtKeepsAModelPerLengthOfOneRunWithTheChosenLoss) {
  CliRun train = Cli(
      With({"train", "--images", Path("images"), "--clicks", Path("clicks.jsonl"), "--out",
            Path("m.pt"), "--steps", "3", "--save-at", "2,1,9", "--set", "model.loss.kind=pce_cv"},
           kSmallModel));
  ASSERT_EQ(train.code, 0) << train.err;
  EXPECT_EQ(nlohmann::json::parse(train.out)["steps"], 3);
  EXPECT_TRUE(fs::exists(Path("m.step1.pt")));
  EXPECT_TRUE(fs::exists(Path("m.step2.pt")));
  EXPECT_FALSE(fs::exists(Path("m.step9.pt")));  // past the run's end: the run is m.pt itself
  ASSERT_TRUE(fs::exists(Path("m.pt")));
  auto loaded = model::CheckpointStore::Load(Path("m.step2.pt"), torch::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->options().loss.kind, model::LossKind::kPceCv);

  CliRun seconds_only = Cli({"train", "--images", Path("images"), "--clicks", Path("clicks.jsonl"),
                             "--out", Path("s.pt"), "--seconds", "1", "--save-at", "2"});
  EXPECT_EQ(seconds_only.code, 1);
  EXPECT_THAT(seconds_only.err, HasSubstr("--save-at"));
}

TEST_F(OfflineCommandsTest, TrainHoldsOutImagesAndKeepsTheWeightsThatDoBestOnThem) {
  CliRun train = Cli(With(
      {"train", "--images", Path("images"), "--clicks", Path("clicks.jsonl"), "--out", Path("m.pt"),
       "--steps", "4", "--set", "trainer.held_out=0.5", "--set", "trainer.validate_every=2"},
      kSmallModel));
  ASSERT_EQ(train.code, 0) << train.err;
  nlohmann::json summary = nlohmann::json::parse(train.out);
  EXPECT_EQ(summary["held_out"]["images"], 3);  // half of 6
  EXPECT_EQ(summary["examples"]["clicks"], 3);  // trained on the others
  const int64_t kept = summary["held_out"]["kept_step"];
  EXPECT_TRUE(kept == 2 || kept == 4) << kept;

  // One image in ten of six rounds to 1, too few to judge by: none held out, the last weights.
  CliRun few = Train(Path("clicks.jsonl"));
  ASSERT_EQ(few.code, 0) << few.err;
  nlohmann::json few_summary = nlohmann::json::parse(few.out);
  EXPECT_EQ(few_summary["held_out"]["images"], 0);
  EXPECT_EQ(few_summary["held_out"]["kept_step"], 0);
  EXPECT_EQ(few_summary["examples"]["clicks"], 6);
}

TEST_F(OfflineCommandsTest, TrainTakesScribblesBesideClicksAndMasks) {
  // Scribbles for the first 4 of the 6 images: each one's truth, 255 (unknown) below row 5.
  fs::create_directories(Path("scribbles"));
  for (int i = 0; i < 4; ++i) {
    const std::string name = "synthetic_000" + std::to_string(i) + ".png";
    Result<Image> mask = ReadPngFile(Path("truth/" + name));
    ASSERT_TRUE(mask.ok()) << mask.status().ToString();
    std::vector<int64_t> ids(mask->pixels.begin(), mask->pixels.end());
    std::fill(ids.begin() + 5 * mask->width, ids.end(), 255);
    ASSERT_TRUE(WriteMaskPng(Path("scribbles/" + name), ids, mask->width, mask->height).ok());
  }
  // Scribbles alone; then with clicks (2 images have only clicks); a mask wins over scribbles.
  for (const auto& [more, counts] :
       std::vector<std::pair<std::vector<std::string>, std::vector<int>>>{
           {{}, {0, 0, 4}},
           {{"--clicks", Path("clicks.jsonl")}, {2, 0, 4}},
           {{"--clicks", Path("clicks.jsonl"), "--masks", Path("truth")}, {0, 6, 0}}}) {
    CliRun train = Cli(With(With({"train", "--images", Path("images"), "--scribbles",
                                  Path("scribbles"), "--out", Path("m.pt"), "--steps", "2"},
                                 more),
                            kSmallModel));
    ASSERT_EQ(train.code, 0) << train.err;
    nlohmann::json examples = nlohmann::json::parse(train.out)["examples"];
    EXPECT_EQ(examples["clicks"], counts[0]) << train.out;
    EXPECT_EQ(examples["dense"], counts[1]) << train.out;
    EXPECT_EQ(examples["scribbles"], counts[2]) << train.out;
  }
  // A mask directory with an unknown pixel is refused: masks are complete.
  CliRun refused = Train("", Path("scribbles"));
  EXPECT_EQ(refused.code, 1);
  EXPECT_THAT(refused.err, HasSubstr("mask value 255"));
}

TEST_F(OfflineCommandsTest, ColourImagesTrainAndInferAModelThatKeepsTheirColour) {
  CliRun g = Cli({"generate", "--out", Path("rgb"), "--count", "4", "--size", "40", "--color"});
  ASSERT_EQ(g.code, 0) << g.err;
  auto png = ReadPngFile(Path("rgb/images/synthetic_0000.png"), {}, DecodeColor::kRgb);
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  EXPECT_EQ(png->channels, 3);

  auto train = [&](const std::string& images, const std::string& out,
                   std::vector<std::string> more) {
    return Cli(With(With({"train", "--images", images, "--clicks", Path("rgb/clicks.jsonl"),
                          "--out", out, "--steps", "2"},
                         kSmallModel),
                    more));
  };
  // auto follows the images: colour here, gray for the gray set; gray is a choice too.
  CliRun colour = train(Path("rgb/images"), Path("rgb.pt"), {});
  ASSERT_EQ(colour.code, 0) << colour.err;
  EXPECT_EQ(nlohmann::json::parse(colour.out)["image_channels"], 3);
  CliRun gray = train(Path("rgb/images"), Path("gray.pt"), {"--set", "model.color=gray"});
  ASSERT_EQ(gray.code, 0) << gray.err;
  EXPECT_EQ(nlohmann::json::parse(gray.out)["image_channels"], 1);
  CliRun gray_set = Train(Path("clicks.jsonl"));
  ASSERT_EQ(gray_set.code, 0) << gray_set.err;
  EXPECT_EQ(nlohmann::json::parse(gray_set.out)["image_channels"], 1);
  auto loaded = model::CheckpointStore::Load(Path("rgb.pt"), torch::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->options().unet.image_channels, 3);

  // Either model infers either kind of image: the images follow the model.
  for (const auto& [model, images] :
       {std::pair{"rgb.pt", "images"}, {"gray.pt", "rgb/images"}, {"rgb.pt", "rgb/images"}}) {
    CliRun infer = Cli({"infer", "--model", Path(model), "--images", Path(images), "--out",
                        Path(std::string("pred_") + model), "--samples", "2", "--set",
                        "compute.torch_threads=1"});
    ASSERT_EQ(infer.code, 0) << model << " on " << images << ": " << infer.err;
  }
  CliRun calibrate =
      Cli({"calibrate", "--model", Path("rgb.pt"), "--images", Path("rgb/images"), "--truth",
           Path("rgb/truth"), "--samples", "2", "--set", "compute.torch_threads=1"});
  ASSERT_EQ(calibrate.code, 0) << calibrate.err;
  EXPECT_TRUE(nlohmann::json::parse(calibrate.out).contains("best")) << calibrate.out;
}

TEST_F(OfflineCommandsTest, GridsOf128And256TrainAndInferImagesCroppedToTheirContent) {
  // The 40x40 generated images in a black 100x80 frame at (30, 20), their clicks moved with them.
  fs::create_directories(Path("framed/images"));
  for (int i = 0; i < 6; ++i) {
    const std::string name = "synthetic_000" + std::to_string(i) + ".png";
    Result<Image> image = ReadPngFile(Path("images/" + name));
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    std::vector<uint8_t> framed(100 * 80, 0);
    for (int y = 0; y < 40; ++y) {
      for (int x = 0; x < 40; ++x) {
        framed[static_cast<size_t>(y + 20) * 100 + x + 30] =
            static_cast<uint8_t>(1 + 254 * image->At(x, y) / image->NominalMax());
      }
    }
    ASSERT_TRUE(
        WriteBinaryFile(Path("framed/images/" + name), EncodePngGray8(framed, 100, 80).value())
            .ok());
  }
  std::vector<std::string> clicks;
  for (const std::string& line : ReadLines("clicks.jsonl")) {
    nlohmann::json click = nlohmann::json::parse(line);
    click["x"] = click["x"].get<int>() + 30;
    click["y"] = click["y"].get<int>() + 20;
    clicks.push_back(click.dump());
  }
  WriteLines("framed/clicks.jsonl", clicks);

  for (const char* resolution : {"128", "256"}) {
    SCOPED_TRACE(resolution);
    const std::string model = Path(std::string("crop") + resolution + ".pt");
    CliRun train = Cli(With(With({"train", "--images", Path("framed/images"), "--clicks",
                                  Path("framed/clicks.jsonl"), "--out", model, "--steps", "1"},
                                 kSmallModel),
                            {"--set", std::string("model.resolution=") + resolution, "--set",
                             "model.crop_to_content=true"}));
    ASSERT_EQ(train.code, 0) << train.err;
    auto loaded = model::CheckpointStore::Load(model, torch::kCPU);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(loaded->options().resolution, std::stoi(resolution));
    EXPECT_TRUE(loaded->options().crop_to_content);  // the model file says how it places images
    // The configuration does not crop; the model does, and its masks come back at 100x80.
    const std::string pred = Path(std::string("pred") + resolution);
    CliRun infer = Cli({"infer", "--model", model, "--images", Path("framed/images"), "--clicks",
                        Path("framed/clicks.jsonl"), "--out", pred, "--samples", "2", "--steps",
                        "2", "--set", "compute.torch_threads=1"});
    ASSERT_EQ(infer.code, 0) << infer.err;
    Result<Image> mask = ReadPngFile(pred + "/synthetic_0000.png");
    ASSERT_TRUE(mask.ok()) << mask.status().ToString();
    ASSERT_EQ(mask->width, 100);
    ASSERT_EQ(mask->height, 80);
    // Outside the content and its 2-px margin ([28, 72) x [18, 62)) every pixel is background.
    int outside = 0;
    for (int y = 0; y < 80; ++y) {
      for (int x = 0; x < 100; ++x) {
        if ((x < 28 || x >= 72 || y < 18 || y >= 62) && mask->At(x, y) != 0) ++outside;
      }
    }
    EXPECT_EQ(outside, 0);
  }
}

TEST_F(OfflineCommandsTest, EvalOfTruthAgainstItselfIsPerfect) {
  CliRun eval = Cli({"eval", "--pred", Path("truth"), "--truth", Path("truth")});
  ASSERT_EQ(eval.code, 0) << eval.err;
  nlohmann::json scores = nlohmann::json::parse(eval.out);
  EXPECT_DOUBLE_EQ(scores["mean"]["dice"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(scores["mean"]["hd95"].get<double>(), 0.0);
}

TEST_F(OfflineCommandsTest, ClickOutsideItsImageNamesFileAndLine) {
  auto lines = ReadLines("clicks.jsonl");
  lines[2] = R"({"image": "synthetic_0002.png", "x": 40, "y": 5, "class": 1})";
  WriteLines("clicks.jsonl", lines);
  CliRun r = Train(Path("clicks.jsonl"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("clicks.jsonl:3"));
  EXPECT_THAT(r.err, HasSubstr("40x40"));
}

TEST_F(OfflineCommandsTest, ClickNamingAMissingFileNamesFileAndLine) {
  auto lines = ReadLines("clicks.jsonl");
  lines[4] = R"({"image": "nope.png", "x": 1, "y": 1, "class": 1})";
  WriteLines("clicks.jsonl", lines);
  CliRun r = Train(Path("clicks.jsonl"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("clicks.jsonl:5"));
  EXPECT_THAT(r.err, HasSubstr("nope.png"));
}

TEST_F(OfflineCommandsTest, UnknownClassNamesFileAndLine) {
  auto lines = ReadLines("clicks.jsonl");
  lines[0] = R"({"image": "synthetic_0000.png", "x": 1, "y": 1, "class": 7})";
  WriteLines("clicks.jsonl", lines);
  CliRun r = Train(Path("clicks.jsonl"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("clicks.jsonl:1"));
  EXPECT_THAT(r.err, HasSubstr("class"));
}

TEST_F(OfflineCommandsTest, MalformedClickLineNamesFileAndLine) {
  auto lines = ReadLines("clicks.jsonl");
  lines[1] = R"({"image": "synthetic_0001.png", "x": 1,)";
  WriteLines("clicks.jsonl", lines);
  CliRun r = Train(Path("clicks.jsonl"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("clicks.jsonl:2"));
}

TEST_F(OfflineCommandsTest, TruncatedImageNamesTheFile) {
  std::string image = Path("images/synthetic_0003.png");
  fs::resize_file(image, fs::file_size(image) / 2);
  CliRun r = Train(Path("clicks.jsonl"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("synthetic_0003.png"));
  CliRun infer =
      Cli({"infer", "--model", Path("none.pt"), "--images", Path("images"), "--out", Path("pred")});
  EXPECT_EQ(infer.code, 1);
  EXPECT_THAT(infer.err, HasSubstr("none.pt"));  // the missing model is reported first
}

TEST_F(OfflineCommandsTest, MaskOfTheWrongSizeNamesTheFile) {
  fs::copy_file(Path("truth/synthetic_0000.png"), Path("small.png"));
  CliRun g = Cli({"generate", "--out", Path("other"), "--count", "1", "--size", "24"});
  ASSERT_EQ(g.code, 0) << g.err;
  fs::copy_file(Path("other/truth/synthetic_0000.png"), Path("truth/synthetic_0001.png"),
                fs::copy_options::overwrite_existing);
  CliRun r = Train("", Path("truth"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("synthetic_0001.png"));
  CliRun eval = Cli({"eval", "--pred", Path("truth"), "--truth", Path("other/truth")});
  EXPECT_EQ(eval.code, 1);
  EXPECT_THAT(eval.err, HasSubstr("synthetic_0000.png"));
}

TEST_F(OfflineCommandsTest, TrainNeedsSupervisionAndABudget) {
  CliRun none = Cli({"train", "--images", Path("images"), "--out", Path("m.pt"), "--steps", "1"});
  EXPECT_EQ(none.code, 1);
  EXPECT_THAT(none.err, HasSubstr("--clicks"));
  CliRun no_budget = Cli({"train", "--images", Path("images"), "--clicks", Path("clicks.jsonl"),
                          "--out", Path("m.pt")});
  EXPECT_EQ(no_budget.code, 1);
  EXPECT_THAT(no_budget.err, HasSubstr("--steps"));
}

}  // namespace
}  // namespace clickdiff
