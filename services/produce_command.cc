// `clickdiff produce`: streams a data set in the interchange formats (DESIGN.md) to Kafka: every
// PNG of a directory as an ImageEvent, then every click of a JSON Lines file as a ClickEvent, and
// optionally every ground-truth mask as a LabelEvent. Ids are derived from the files, so producing
// the same data twice is harmless (the service applies each id once).
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/dataset_files.h"
#include "io/image_codec.h"
#include "io/kafka_producer.h"
#include "schemas/events.pb.h"
#include "services/command.h"
#include "services/event_files.h"
#include "services/runtime_file.h"

namespace clickdiff {
namespace {

// How long a full local queue may stay full before a send fails.
constexpr std::chrono::seconds kLongestFullQueue{60};

struct ProduceArgs {
  ConfigOptions config;
  std::string images;
  std::string clicks;
  std::string labels;
  bool labels_for_evaluation = false;
  std::string scribbles;
  std::string dataset = "default";
  double rate = 0;  // events per second; 0: as fast as possible
  std::string bootstrap;
};

// Paces events at `rate` per second (0: no pacing).
class Pacer {
 public:
  explicit Pacer(double rate) : rate_(rate), start_(std::chrono::steady_clock::now()) {}
  void Next() {
    if (rate_ <= 0) return;
    ++sent_;
    std::this_thread::sleep_until(start_ + std::chrono::duration<double>(sent_ / rate_));
  }

 private:
  double rate_;
  std::chrono::steady_clock::time_point start_;
  uint64_t sent_ = 0;
};

// One run's producer, pacing and counts.
struct Sender {
  KafkaProducer* producer;
  const KafkaTopics& topics;
  const std::string& dataset;
  Pacer pacer;
  uint64_t images = 0, clicks = 0, labels = 0;

  Status Send(const std::string& topic, const std::string& key, const std::string& value,
              const std::string& where) {
    // Sending as fast as it can, the producer outruns the broker: its local queue fills, and the
    // poll thread's deliveries make room again (or fail records past message.timeout.ms). A queue
    // that stays full (a broker taking nothing, a record larger than the whole queue) is an error.
    Status sent = producer->Produce(topic, key, value);
    const auto deadline = std::chrono::steady_clock::now() + kLongestFullQueue;
    while (sent.code() == StatusCode::kResourceExhausted &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      sent = producer->Produce(topic, key, value);
    }
    if (sent.code() == StatusCode::kResourceExhausted) {
      sent = ResourceExhausted("the producer's local queue stayed full for " +
                               std::to_string(kLongestFullQueue.count()) +
                               " s: the broker takes nothing, or a record is larger than "
                               "queue.buffering.max.kbytes");
    }
    CLICKDIFF_RETURN_IF_ERROR(sent.WithContext(where));
    pacer.Next();
    return Status::Ok();
  }
};

// Images: each PNG file as it is (the service decodes and checks it).
Status SendImages(const std::string& dir, Sender& sender) {
  Result<std::vector<std::string>> names = ListPngFiles(dir);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    Result<v1::ImageEvent> event = ImageEventFromPng(path, name, sender.dataset);
    if (!event.ok()) return event.status();
    CLICKDIFF_RETURN_IF_ERROR(
        sender.Send(sender.topics.images, name, event->SerializeAsString(), path));
    ++sender.images;
  }
  return Status::Ok();
}

// What a directory of label PNGs holds.
enum class LabelFiles { kDense, kTruth, kScribbles };

// Label maps of class ids: dense masks as training labels or ground truth, or partial label maps
// (scribbles, 255 unlabelled) as training labels (label id "scribbles", so an image may have both).
Status SendLabels(const std::string& dir, LabelFiles kind, Sender& sender) {
  Result<std::vector<std::string>> masks = ListPngFiles(dir);
  if (!masks.ok()) return masks.status();
  for (const std::string& name : *masks) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    Result<Image> mask = ReadPngFile(path);
    if (!mask.ok()) return mask.status();
    v1::LabelEvent label = LabelEventFrom(sender.dataset, name, mask->width, mask->height,
                                          mask->pixels, kind == LabelFiles::kTruth);
    if (kind == LabelFiles::kScribbles) label.set_label_id("scribbles");
    CLICKDIFF_RETURN_IF_ERROR(
        sender.Send(sender.topics.labels, name, label.SerializeAsString(), path));
    ++sender.labels;
  }
  return Status::Ok();
}

Status SendClicks(const std::string& file, int num_classes, Sender& sender) {
  ClickFileOptions options;
  options.num_classes = num_classes;
  Result<std::vector<Click>> all = ReadClicksFile(file, options);
  if (!all.ok()) return all.status();
  for (const Click& c : *all) {
    CLICKDIFF_RETURN_IF_ERROR(sender.Send(sender.topics.clicks, c.image,
                                          ClickEventFrom(c, sender.dataset).SerializeAsString(),
                                          c.Where()));
    ++sender.clicks;
  }
  return Status::Ok();
}

Status RunProduce(const ProduceArgs& args, std::ostream& out) {
  if (args.images.empty() && args.labels.empty() && args.scribbles.empty() && args.clicks.empty()) {
    return InvalidArgument("nothing to send: give --images, --labels, --scribbles and/or --clicks");
  }
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<std::string> bootstrap = ResolveBootstrap(*config, args.bootstrap);
  if (!bootstrap.ok()) return bootstrap.status();
  Result<std::unique_ptr<KafkaProducer>> producer =
      KafkaProducer::Create(config->kafka, *bootstrap);
  if (!producer.ok()) return producer.status();
  Sender sender{producer->get(), config->kafka.topics, args.dataset, Pacer(args.rate)};
  if (!args.images.empty()) CLICKDIFF_RETURN_IF_ERROR(SendImages(args.images, sender));
  // Images first: a click that overtakes its image still waits for it, but need not.
  CLICKDIFF_RETURN_IF_ERROR((*producer)->Flush(std::chrono::seconds(30)));
  if (!args.labels.empty()) {
    CLICKDIFF_RETURN_IF_ERROR(SendLabels(
        args.labels, args.labels_for_evaluation ? LabelFiles::kTruth : LabelFiles::kDense, sender));
  }
  if (!args.scribbles.empty()) {
    CLICKDIFF_RETURN_IF_ERROR(SendLabels(args.scribbles, LabelFiles::kScribbles, sender));
  }
  if (!args.clicks.empty()) {
    CLICKDIFF_RETURN_IF_ERROR(SendClicks(args.clicks, config->model.num_classes, sender));
  }
  CLICKDIFF_RETURN_IF_ERROR((*producer)->Flush(std::chrono::seconds(30)));
  out << nlohmann::json({{"bootstrap_servers", *bootstrap},
                         {"images", sender.images},
                         {"clicks", sender.clicks},
                         {"labels", sender.labels}})
             .dump()
      << "\n";
  return Status::Ok();
}

}  // namespace

void AddProduceCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<ProduceArgs>();
  auto* cmd = app.add_subcommand(
      "produce",
      "send images (then masks, scribbles, clicks) from files to the service's Kafka topics");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--images", args->images, "directory of PNG images");
  cmd->add_option("--clicks", args->clicks, "clicks, JSON Lines");
  cmd->add_option("--labels", args->labels, "directory of class-id PNG masks to send as labels");
  cmd->add_flag("--for-evaluation", args->labels_for_evaluation,
                "the --labels are ground truth for scoring, not for training");
  cmd->add_option("--scribbles", args->scribbles,
                  "directory of class-id PNG label maps, 255 where unlabelled, to send as "
                  "partial training labels");
  cmd->add_option("--dataset", args->dataset, "dataset name the events carry")
      ->capture_default_str();
  cmd->add_option("--rate", args->rate, "events per second (default: as fast as possible)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--bootstrap", args->bootstrap,
                  "Kafka bootstrap servers (default: kafka.bootstrap_servers, then the running "
                  "service's)");
  cmd->callback([&context, args] { Finish(context, RunProduce(*args, *context.out)); });
}

}  // namespace clickdiff
