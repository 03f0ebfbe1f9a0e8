// `clickdiff subscribe`: receives masks from a running service over ZeroMQ, prints one JSON line
// per mask and optionally writes each as PNGs (class ids, and uncertainty/ with 0..255 maps).
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/ids.h"
#include "io/image_codec.h"
#include "io/zmq_client.h"
#include "io/zmq_server.h"
#include "services/command.h"
#include "services/runtime_file.h"

namespace clickdiff {
namespace {

struct SubscribeArgs {
  ConfigOptions config;
  std::string endpoint;
  std::string dataset;
  std::string image;
  std::string out;
  bool versions = false;  // also keep every model version's mask
  int count = 0;          // stop after this many masks (0: never)
  double timeout = 0;     // stop after this many seconds without a mask (0: never)
};

// Writes the mask and its uncertainty as 8-bit PNGs: OUT/<dataset>/<image>.png and
// OUT/<dataset>/uncertainty/<image>.png (the latest, a preview included until its final mask
// comes), plus, with `versions` and for final masks only,
// OUT/<dataset>/versions/[uncertainty/]<image stem>.v<model version>.png.
// A mask whose dataset or image id is not a valid id (base/ids.h: one safe file name) is not
// written (kInvalidArgument): whatever the publisher sends, nothing lands outside `dir`.
Status WriteMask(const std::string& dir, const v1::MaskResult& mask, bool versions) {
  namespace fs = std::filesystem;
  for (auto [field, id] :
       {std::pair{"dataset", &mask.dataset()}, std::pair{"image_id", &mask.image_id()}}) {
    if (std::string bad = IdProblem(field, *id); !bad.empty()) {
      return InvalidArgument("mask not written: " + bad);
    }
  }
  fs::path base = fs::path(dir) / mask.dataset();
  std::string name = mask.image_id();
  if (fs::path(name).extension() == ".png") name = fs::path(name).stem().string();
  std::vector<std::pair<fs::path, std::string>> files = {{base, name + ".png"}};
  if (versions && !mask.preview()) {  // a preview is only the current view until its final mask
    files.emplace_back(base / "versions",
                       name + ".v" + std::to_string(mask.model_version()) + ".png");
  }
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  for (const auto& [folder, file] : files) {
    std::error_code ec;
    fs::create_directories(folder / "uncertainty", ec);
    if (ec) return Unavailable(folder.string() + ": " + ec.message());
    for (auto [path, values] : {std::pair{folder / file, &mask.mask()},
                                std::pair{folder / "uncertainty" / file, &mask.uncertainty()}}) {
      Result<std::vector<uint8_t>> png = EncodePngGray8(
          bytes(*values), static_cast<int>(mask.width()), static_cast<int>(mask.height()));
      if (!png.ok()) return png.status().WithContext(mask.image_id());
      CLICKDIFF_RETURN_IF_ERROR(WriteBinaryFile(path.string(), *png));
    }
  }
  return Status::Ok();
}

Status RunSubscribe(const SubscribeArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<ZmqTarget> target = ResolveZmq(*config, args.endpoint, ZmqSocket::kPublish);
  if (!target.ok()) return target.status();
  std::string prefix = "mask.";
  if (!args.dataset.empty()) {
    prefix = MaskTopic(args.dataset, args.image);
  } else if (!args.image.empty()) {
    return InvalidArgument("--image needs --dataset");
  }
  Result<std::unique_ptr<MaskSubscriber>> subscriber =
      MaskSubscriber::Connect(target->endpoint, prefix, target->options);
  if (!subscriber.ok()) return subscriber.status();
  spdlog::info("subscribed to {} on {}", prefix, target->endpoint);
  int received = 0;
  auto last = std::chrono::steady_clock::now();
  while (args.count == 0 || received < args.count) {
    Result<std::optional<v1::MaskResult>> mask =
        (*subscriber)->Receive(std::chrono::milliseconds(200));
    if (!mask.ok()) return mask.status();
    if (!mask->has_value()) {
      if (args.timeout > 0 &&
          std::chrono::steady_clock::now() - last > std::chrono::duration<double>(args.timeout)) {
        break;
      }
      continue;
    }
    const v1::MaskResult& m = **mask;
    // A prefix subscription to image "a" also matches "ab": keep exact matches only.
    if (!args.image.empty() && m.image_id() != args.image) continue;
    last = std::chrono::steady_clock::now();
    ++received;
    if (!args.out.empty()) {
      Status written = WriteMask(args.out, m, args.versions);
      if (written.code() == StatusCode::kInvalidArgument) {
        spdlog::warn("{}", written.ToString());  // the publisher's fault: skip it, go on
      } else if (!written.ok()) {
        return written;
      }
    }
    size_t foreground = 0;
    for (char c : m.mask()) foreground += c != 0;
    out << nlohmann::json({{"dataset", m.dataset()},
                           {"image_id", m.image_id()},
                           {"width", m.width()},
                           {"height", m.height()},
                           {"model_version", m.model_version()},
                           {"click_revision", m.click_revision()},
                           {"sequence", m.sequence()},
                           {"samples", m.samples()},
                           {"preview", m.preview()},
                           {"foreground_pixels", foreground},
                           {"latency_ms", m.latency_ms()}})
               .dump()
        << std::endl;
  }
  return Status::Ok();
}

}  // namespace

void AddSubscribeCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<SubscribeArgs>();
  auto* cmd = app.add_subcommand(
      "subscribe", "receive masks from a running service over ZeroMQ (one JSON line each)");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--endpoint", args->endpoint,
                  "ZeroMQ publish endpoint (default: the running service's)");
  cmd->add_option("--dataset", args->dataset, "only this dataset");
  cmd->add_option("--image", args->image, "only this image (needs --dataset)");
  cmd->add_option("--out", args->out, "write masks as PNG under OUT/<dataset>/");
  cmd->add_flag(
      "--versions", args->versions,
      "with --out, also keep each model version's final mask under OUT/<dataset>/versions/");
  cmd->add_option("--count", args->count, "stop after this many masks")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout", args->timeout, "stop after this many seconds without a mask")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([&context, args] { Finish(context, RunSubscribe(*args, *context.out)); });
}

}  // namespace clickdiff
