// `clickdiff generate`: writes a synthetic data set in the interchange formats (images/, truth/,
// clicks.jsonl) for tests and demos: organ-like shapes on textured backgrounds whose intensities
// overlap them, one click per object drawn uniformly inside its true mask. 16-bit gray PNGs, or
// with --color 8-bit RGB ones whose classes differ in hue as well (model/synthetic.h).
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/image_codec.h"
#include "model/synthetic.h"
#include "services/command.h"

namespace clickdiff {
namespace {

struct GenerateArgs {
  std::string out;
  int64_t count = 64;
  int64_t size = 96;
  int64_t classes = 2;
  uint64_t seed = 1;
  bool color = false;
};

// The PNG of one generated image: 16-bit gray (keeping the texture's fine intensity steps), or
// 8-bit RGB, interleaved.
Result<std::vector<uint8_t>> EncodeImage(const torch::Tensor& image) {
  const int h = static_cast<int>(image.size(1));
  const int w = static_cast<int>(image.size(2));
  if (image.size(0) == 3) {
    torch::Tensor rgb =
        (image.permute({1, 2, 0}) * 255.0).round().clamp(0, 255).to(torch::kUInt8).contiguous();
    return EncodePngRgb8(
        std::vector<uint8_t>(rgb.data_ptr<uint8_t>(), rgb.data_ptr<uint8_t>() + rgb.numel()), w, h);
  }
  torch::Tensor pixels =
      (image[0] * 65535.0).round().clamp(0, 65535).to(torch::kInt32).contiguous();
  return EncodePngGray16(std::vector<uint16_t>(pixels.data_ptr<int32_t>(),
                                               pixels.data_ptr<int32_t>() + pixels.numel()),
                         w, h);
}

Status RunGenerate(const GenerateArgs& args, std::ostream& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* sub : {"images", "truth"}) {
    fs::create_directories(fs::path(args.out) / sub, ec);
    if (ec) return Unavailable(args.out + ": cannot create " + sub + "/: " + ec.message());
  }
  model::SyntheticOptions options;
  options.height = options.width = args.size;
  options.num_classes = args.classes;
  options.color = args.color;
  std::vector<model::SyntheticSample> samples =
      model::GenerateSynthetic(options, args.count, args.seed);

  const std::string clicks_path = (fs::path(args.out) / "clicks.jsonl").string();
  std::ofstream clicks(clicks_path);
  if (!clicks) return Unavailable(clicks_path + ": cannot write");
  const int w = static_cast<int>(args.size);
  const int h = static_cast<int>(args.size);
  for (size_t i = 0; i < samples.size(); ++i) {
    std::ostringstream name;
    name << "synthetic_" << std::setw(4) << std::setfill('0') << i << ".png";
    Result<std::vector<uint8_t>> png = EncodeImage(samples[i].image);
    if (!png.ok()) return png.status();
    CLICKDIFF_RETURN_IF_ERROR(
        WriteBinaryFile((fs::path(args.out) / "images" / name.str()).string(), *png));
    torch::Tensor mask = samples[i].mask.contiguous();
    std::vector<int64_t> ids(mask.data_ptr<int64_t>(), mask.data_ptr<int64_t>() + mask.numel());
    CLICKDIFF_RETURN_IF_ERROR(
        WriteMaskPng((fs::path(args.out) / "truth" / name.str()).string(), ids, w, h));
    for (const model::Click& c : samples[i].clicks) {
      clicks << nlohmann::json{{"image", name.str()}, {"x", c.x}, {"y", c.y}, {"class", c.class_id}}
                    .dump()
             << "\n";
    }
  }
  if (!clicks.flush()) return Unavailable(clicks_path + ": write failed");
  out << nlohmann::json{{"out", args.out},         {"images", samples.size()}, {"size", args.size},
                        {"classes", args.classes}, {"color", args.color},      {"seed", args.seed}}
             .dump()
      << "\n";
  return Status::Ok();
}

}  // namespace

void AddGenerateCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd =
      app.add_subcommand("generate", "write a synthetic data set: images/, truth/, clicks.jsonl");
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--count", args->count, "number of images")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--size", args->size, "image side in pixels")
      ->check(CLI::Range(16, 4096))
      ->capture_default_str();
  cmd->add_option("--classes", args->classes, "classes, background included")
      ->check(CLI::Range(2, 8))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "generator seed")->capture_default_str();
  cmd->add_flag("--color", args->color, "RGB images whose classes differ in hue as well");
  cmd->callback([&context, args] { Finish(context, RunGenerate(*args, *context.out)); });
}

}  // namespace clickdiff
