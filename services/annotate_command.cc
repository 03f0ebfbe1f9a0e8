// `clickdiff annotate`: a simulated annotator that drives a running service only through its public
// interfaces (images and clicks into Kafka, masks out of ZeroMQ, the query socket's status) and
// prints what an annotator's session costs: per image the clicks used, Dice after each click and
// how long each click took to come back as a mask. The protocol is services/annotator.h's (NoC):
// images one by one in name order; for each structure of an image's ground truth, clicks until the
// mask's Dice for it reaches --target, at most --max-clicks; the first click of a structure is
// always made. After a click it records the first mask that reflects it (the click's preview when
// the service draws them: first_ms, first_dice), waits for the final mask that reflects it (the
// service redraws a clicked image at once) and, when --learn-wait > 0, for the mask of a model
// version trained on it (the status query's model_clicks_seen), taking the newest mask of the image
// when that wait runs out. "Trained on it" compares the served version's clicks_seen with the
// clicks the service had stored when the session started plus those sent since: run it against a
// service nobody else clicks on, with the version gate off (trainer.held_out_images 0, the
// default), since a held-out image's clicks count as seen though no version trained on them.
//
// Output: JSON Lines on stdout: {"event":"click", ...} per click, {"event":"image", ...} per image,
// {"event":"session", ...} at the end (ops/experiments/annotate_session.sh draws them).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "io/dataset_files.h"
#include "io/image_codec.h"
#include "io/kafka_producer.h"
#include "io/zmq_client.h"
#include "io/zmq_server.h"
#include "services/annotator.h"
#include "services/command.h"
#include "services/event_files.h"
#include "services/runtime_file.h"

namespace clickdiff {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct AnnotateArgs {
  ConfigOptions config;
  std::string images;
  std::string truth;
  std::string dataset = "annotate";
  int max_clicks = 20;
  double target = 0.9;
  int count = 0;           // images to annotate (0: all)
  double learn_wait = 60;  // s to wait for a version trained on the click (0: do not)
  double mask_wait = 300;  // s to wait for any mask the protocol needs before giving up
  bool evaluate = false;   // also send each ground truth for evaluation (clickdiff stats)
  // Which masks the annotator saves as their image's training label when it leaves the image:
  // none (empty), "reached" (those that reached the target, as an annotator accepts a mask) or
  // "all" (whatever it stopped at).
  std::string save_masks;
  std::string bootstrap;
  std::string endpoint;
  std::string query_endpoint;
};

double MsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

SteadyClock::time_point After(double seconds) {
  return SteadyClock::now() +
         std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
}

// The newest mask of each image of the dataset, as they arrive: the one that reflects the most
// clicks, then drawn by the newest model version, then published last. Not the publish sequence
// alone: it starts again at 1 when the service restarts, while the masks it re-sends keep theirs.
class MaskWatch {
 public:
  static bool Newer(const v1::MaskResult& a, const v1::MaskResult& b) {
    return std::make_tuple(a.click_revision(), a.model_version(), a.sequence()) >=
           std::make_tuple(b.click_revision(), b.model_version(), b.sequence());
  }

  explicit MaskWatch(MaskSubscriber* subscriber) : subscriber_(subscriber) {}

  // Receives masks until the newest final mask of `image` satisfies `ready` (with `previews`, the
  // newest preview too), or `deadline` (then nullopt). `between` runs about every 100 ms while
  // waiting (e.g. to poll the service's status).
  Result<std::optional<v1::MaskResult>> Until(
      const std::string& image, const std::function<bool(const v1::MaskResult&)>& ready,
      SteadyClock::time_point deadline, const std::function<Status()>& between = {},
      bool previews = false) {
    while (true) {
      for (const auto* newest : {&finals_, &previews_}) {
        if (newest == &previews_ && !previews) continue;
        auto it = newest->find(image);
        if (it != newest->end() && ready(it->second)) return std::optional(it->second);
      }
      if (SteadyClock::now() >= deadline) return std::optional<v1::MaskResult>();
      if (between) CLICKDIFF_RETURN_IF_ERROR(between());
      Result<std::optional<v1::MaskResult>> mask =
          subscriber_->Receive(std::chrono::milliseconds(100));
      if (!mask.ok()) return mask.status();
      while (mask->has_value()) {
        v1::MaskResult& m = **mask;
        auto& newest = m.preview() ? previews_ : finals_;
        auto [slot, fresh] = newest.try_emplace(m.image_id(), m);
        if (!fresh && Newer(m, slot->second)) slot->second = std::move(m);
        mask = subscriber_->Receive(std::chrono::milliseconds(0));
        if (!mask.ok()) return mask.status();
      }
    }
  }

 private:
  MaskSubscriber* subscriber_;
  std::map<std::string, v1::MaskResult> finals_;    // image -> its newest final mask
  std::map<std::string, v1::MaskResult> previews_;  // image -> its newest preview
};

// The ground truth of image `name` from the --truth directory, as class ids.
Result<LabelGrid> ReadTruth(const std::string& dir, const std::string& name, int num_classes) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  Result<Image> image = ReadPngFile(path);
  if (!image.ok()) return image.status();
  Result<NamedMask> mask =
      MaskFromImage(NamedImage{name, path, std::move(image).value()}, num_classes);
  if (!mask.ok()) return mask.status();
  return LabelGrid{mask->width, mask->height, std::move(mask->class_ids)};
}

Result<LabelGrid> MaskGrid(const v1::MaskResult& mask, const LabelGrid& truth) {
  if (static_cast<int>(mask.width()) != truth.width ||
      static_cast<int>(mask.height()) != truth.height || mask.mask().size() != truth.ids.size()) {
    return DataLoss("the mask of " + mask.image_id() + " is " + std::to_string(mask.width()) + "x" +
                    std::to_string(mask.height()) + " but its ground truth is " +
                    std::to_string(truth.width) + "x" + std::to_string(truth.height));
  }
  LabelGrid grid{truth.width, truth.height, std::vector<int64_t>(truth.ids.size())};
  for (size_t i = 0; i < grid.ids.size(); ++i) {
    grid.ids[i] = static_cast<unsigned char>(mask.mask()[i]);
  }
  return grid;
}

// One session: the connections, what was sent, and the figures so far.
class Session {
 public:
  Session(const AnnotateArgs& args, const Config& config, KafkaProducer* producer,
          MaskSubscriber* subscriber, QueryClient* query, std::ostream& out)
      : args_(args),
        config_(config),
        producer_(producer),
        watch_(subscriber),
        query_(query),
        out_(out) {}

  Status Start() {
    Result<v1::ServiceStatus> status = AskStatus();
    if (!status.ok()) return status.status();
    clicks_before_ = status->clicks();
    return Status::Ok();
  }

  Status Annotate(const std::string& name, int index) {
    Result<LabelGrid> truth = ReadTruth(args_.truth, name, config_.model.num_classes);
    if (!truth.ok()) return truth.status();
    const std::string path = (std::filesystem::path(args_.images) / name).string();
    Result<v1::ImageEvent> image = ImageEventFromPng(path, name, args_.dataset);
    if (!image.ok()) return image.status();
    const auto sent = SteadyClock::now();
    CLICKDIFF_RETURN_IF_ERROR(Send(config_.kafka.topics.images, name, image->SerializeAsString()));
    if (args_.evaluate) {
      v1::LabelEvent label =
          LabelEventFrom(args_.dataset, name, truth->width, truth->height, truth->ids, true);
      CLICKDIFF_RETURN_IF_ERROR(Send(config_.kafka.topics.labels, name, label.SerializeAsString()));
    }
    Result<v1::MaskResult> first = Await(
        name, [](const v1::MaskResult&) { return true; }, "its first mask");
    if (!first.ok()) return first.status();
    const double image_ms = MsSince(sent);
    Result<LabelGrid> mask = MaskGrid(*first, *truth);
    if (!mask.ok()) return mask.status();

    nlohmann::json classes = nlohmann::json::object();
    uint64_t revision = 0;
    bool reached = true;
    std::vector<int> present;  // the structures in this image
    for (int c = 1; c < config_.model.num_classes; ++c) {
      std::optional<SimulatedClick> click = FirstClick(*truth, c);
      if (!click) continue;  // the structure is not in this image
      present.push_back(c);
      const double before = ClassDice(*truth, *mask, c);
      double dice = before, first_click_dice = 0;
      int clicks = 0;
      while (clicks < args_.max_clicks && (clicks == 0 || dice < args_.target) && click) {
        ++clicks;
        ++revision;
        Result<ClickAnswer> answer = SendClick(name, *click, revision, index, clicks);
        if (!answer.ok()) return answer.status();
        Result<LabelGrid> first_answer = MaskGrid(answer->first, *truth);
        if (!first_answer.ok()) return first_answer.status();
        last_click_["first_dice"] = ClassDice(*truth, *first_answer, c);
        mask = MaskGrid(answer->mask, *truth);
        if (!mask.ok()) return mask.status();
        dice = ClassDice(*truth, *mask, c);
        if (clicks == 1) first_click_dice = dice;
        last_click_["dice"] = dice;
        out_ << last_click_.dump() << std::endl;
        click = CorrectiveClick(*truth, *mask, c);
      }
      reached = reached && dice >= args_.target;
      classes[std::to_string(c)] = {{"clicks", clicks},
                                    {"dice_before", before},
                                    {"first_click_dice", first_click_dice},
                                    {"dice", dice},
                                    {"reached", dice >= args_.target}};
      total_clicks_ += static_cast<uint64_t>(clicks);
    }
    // The mask it leaves with holds every structure's last clicks: a later structure's clicks may
    // have pushed an earlier one back below the target, so "reached" is judged on it.
    const bool accepted = std::all_of(present.begin(), present.end(), [&](int c) {
      return ClassDice(*truth, *mask, c) >= args_.target;
    });
    const bool saved =
        revision > 0 && (args_.save_masks == "all" || (args_.save_masks == "reached" && accepted));
    if (saved) {
      v1::LabelEvent label =
          LabelEventFrom(args_.dataset, name, mask->width, mask->height, mask->ids, false);
      CLICKDIFF_RETURN_IF_ERROR(Send(config_.kafka.topics.labels, name, label.SerializeAsString()));
    }
    ++images_;
    reached_ += reached ? 1 : 0;
    out_ << nlohmann::json({{"event", "image"},
                            {"index", index},
                            {"image", name},
                            {"clicks", revision},
                            {"reached", reached},
                            {"saved", saved},
                            {"image_ms", image_ms},
                            {"classes", classes}})
                .dump()
         << std::endl;
    return Status::Ok();
  }

  void Summary() const {
    auto median = [](std::vector<double> v) {
      if (v.empty()) return 0.0;
      std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    out_ << nlohmann::json({{"event", "session"},
                            {"images", images_},
                            {"clicks", total_clicks_},
                            {"clicks_per_image", images_ == 0 ? 0.0
                                                              : static_cast<double>(total_clicks_) /
                                                                    static_cast<double>(images_)},
                            {"reached", reached_},
                            {"target", args_.target},
                            {"max_clicks", args_.max_clicks},
                            {"first_ms_p50", median(first_ms_)},
                            {"response_ms_p50", median(response_ms_)},
                            {"learned_ms_p50", median(learned_ms_)},
                            {"learned", learned_ms_.size()},
                            {"learn_wait_s", args_.learn_wait}})
                .dump()
         << std::endl;
  }

 private:
  Result<v1::ServiceStatus> AskStatus() {
    v1::Query q;
    q.set_kind(v1::Query::KIND_STATUS);
    Result<v1::QueryReply> reply = query_->Ask(q, std::chrono::seconds(10));
    if (!reply.ok()) return reply.status();
    if (!reply->ok()) return Unavailable("status query: " + reply->error());
    return reply->status();
  }

  Status Send(const std::string& topic, const std::string& key, const std::string& value) {
    CLICKDIFF_RETURN_IF_ERROR(producer_->Produce(topic, key, value));
    return producer_->Flush(std::chrono::seconds(30));
  }

  Result<v1::MaskResult> Await(const std::string& image,
                               const std::function<bool(const v1::MaskResult&)>& ready,
                               const std::string& what, bool previews = false) {
    Result<std::optional<v1::MaskResult>> mask =
        watch_.Until(image, ready, After(args_.mask_wait), {}, previews);
    if (!mask.ok()) return mask.status();
    if (!mask->has_value()) {
      return Unavailable("no mask of " + image + " (" + what + ") within " +
                         std::to_string(args_.mask_wait) + " s");
    }
    return std::move(**mask);
  }

  // What a click came back as: the first mask that reflects it (a preview when the service draws
  // them, else the final mask) and the final mask the annotator judges.
  struct ClickAnswer {
    v1::MaskResult first;
    v1::MaskResult mask;
  };

  // Sends `click` (the image's `revision`-th) and returns its answer; fills last_click_ with the
  // click's record (Dice is added by the caller).
  Result<ClickAnswer> SendClick(const std::string& image, const SimulatedClick& click,
                                uint64_t revision, int index, int nth) {
    clickdiff::Click c;
    c.image = image;
    c.x = click.x;
    c.y = click.y;
    c.class_id = click.class_id;
    c.positive = click.positive;
    // Each click is new, even on one pixel, and in a later session on the same store.
    c.click_id = image + "#" + session_id_ + "#" + std::to_string(revision);
    c.annotator = "clickdiff annotate";
    const auto sent = SteadyClock::now();
    CLICKDIFF_RETURN_IF_ERROR(Send(config_.kafka.topics.clicks, image,
                                   ClickEventFrom(c, args_.dataset).SerializeAsString()));
    ++clicks_sent_;
    auto reflects = [&](const v1::MaskResult& m) { return m.click_revision() >= revision; };
    Result<v1::MaskResult> first =
        Await(image, reflects, "click " + std::to_string(revision), /*previews=*/true);
    if (!first.ok()) return first.status();
    const double first_ms = MsSince(sent);
    first_ms_.push_back(first_ms);
    Result<v1::MaskResult> answer = Await(image, reflects, "click " + std::to_string(revision));
    if (!answer.ok()) return answer.status();
    const double response_ms = MsSince(sent);
    response_ms_.push_back(response_ms);
    nlohmann::json learned_ms = nullptr;
    if (args_.learn_wait > 0) {
      // The first version whose training saw every click stored so far, from the status query.
      std::optional<uint64_t> version;
      auto polled = SteadyClock::now() - std::chrono::seconds(1);
      auto poll = [&]() -> Status {
        if (version || SteadyClock::now() - polled < std::chrono::milliseconds(250)) {
          return Status::Ok();
        }
        polled = SteadyClock::now();
        Result<v1::ServiceStatus> status = AskStatus();
        if (!status.ok()) {  // a busy service: not yet; the learn wait bounds the polling
          spdlog::debug("status query: {}", status.status().ToString());
          return Status::Ok();
        }
        if (status->model_clicks_seen() >= clicks_before_ + clicks_sent_) {
          version = status->model_version();
        }
        return Status::Ok();
      };
      Result<std::optional<v1::MaskResult>> learned = watch_.Until(
          image,
          [&](const v1::MaskResult& m) {
            return version && m.model_version() >= *version && m.click_revision() >= revision;
          },
          After(args_.learn_wait), poll);
      if (!learned.ok()) return learned.status();
      if (learned->has_value()) {
        learned_ms = MsSince(sent);
        learned_ms_.push_back(learned_ms.get<double>());
        *answer = std::move(**learned);
      } else {
        Result<v1::MaskResult> newest = Await(image, reflects, "click " + std::to_string(revision));
        if (!newest.ok()) return newest.status();
        *answer = std::move(newest).value();
      }
    }
    last_click_ = {{"event", "click"},
                   {"index", index},
                   {"image", image},
                   {"class", click.class_id},
                   {"click", nth},
                   {"revision", revision},
                   {"x", click.x},
                   {"y", click.y},
                   {"positive", click.positive},
                   {"first_ms", first_ms},
                   {"first_preview", first->preview()},
                   {"response_ms", response_ms},
                   {"learned_ms", learned_ms},
                   {"model_version", answer->model_version()}};
    return ClickAnswer{std::move(first).value(), std::move(answer).value()};
  }

  const AnnotateArgs& args_;
  const Config& config_;
  KafkaProducer* producer_;
  MaskWatch watch_;
  QueryClient* query_;
  std::ostream& out_;
  const std::string session_id_ = std::to_string(NowMs());
  uint64_t clicks_before_ = 0;  // clicks the service had stored when the session started
  uint64_t clicks_sent_ = 0;
  uint64_t total_clicks_ = 0;
  int images_ = 0;
  int reached_ = 0;
  std::vector<double> first_ms_;  // click -> its first mask, a preview or the final one
  std::vector<double> response_ms_;
  std::vector<double> learned_ms_;
  nlohmann::json last_click_;
};

Status RunAnnotate(const AnnotateArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<std::vector<std::string>> names = ListPngFiles(args.images);
  if (!names.ok()) return names.status();
  if (args.count > 0 && static_cast<size_t>(args.count) < names->size()) {
    names->resize(static_cast<size_t>(args.count));
  }
  for (const std::string& name : *names) {  // every ground truth is there before minutes of work
    if (!std::filesystem::is_regular_file(std::filesystem::path(args.truth) / name)) {
      return NotFound("no ground truth " + (std::filesystem::path(args.truth) / name).string() +
                      " for image " + name);
    }
  }
  Result<std::string> bootstrap = ResolveBootstrap(*config, args.bootstrap);
  if (!bootstrap.ok()) return bootstrap.status();
  Result<ZmqTarget> publish = ResolveZmq(*config, args.endpoint, ZmqSocket::kPublish);
  if (!publish.ok()) return publish.status();
  Result<ZmqTarget> queries = ResolveZmq(*config, args.query_endpoint, ZmqSocket::kQuery);
  if (!queries.ok()) return queries.status();
  Result<std::unique_ptr<KafkaProducer>> producer =
      KafkaProducer::Create(config->kafka, *bootstrap);
  if (!producer.ok()) return producer.status();
  Result<std::unique_ptr<MaskSubscriber>> subscriber =
      MaskSubscriber::Connect(publish->endpoint, MaskTopic(args.dataset, ""), publish->options);
  if (!subscriber.ok()) return subscriber.status();
  Result<std::unique_ptr<QueryClient>> query =
      QueryClient::Connect(queries->endpoint, queries->options);
  if (!query.ok()) return query.status();

  Session session(args, *config, producer->get(), subscriber->get(), query->get(), out);
  CLICKDIFF_RETURN_IF_ERROR(session.Start());
  for (size_t i = 0; i < names->size(); ++i) {
    CLICKDIFF_RETURN_IF_ERROR(session.Annotate((*names)[i], static_cast<int>(i)));
  }
  session.Summary();
  return Status::Ok();
}

}  // namespace

void AddAnnotateCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<AnnotateArgs>();
  auto* cmd = app.add_subcommand(
      "annotate",
      "a simulated annotator: streams images into a running service and clicks each until its "
      "mask reaches the target Dice (one JSON line per click, image and the session)");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--images", args->images, "directory of PNG images, streamed in name order")
      ->required();
  cmd->add_option("--truth", args->truth, "directory of their class-id PNG ground truths")
      ->required();
  cmd->add_option("--dataset", args->dataset, "dataset name the events carry")
      ->check([](const std::string& name) {
        // The service refuses these (masks are published as mask.<dataset>.<image>).
        return name.empty() || name.find('.') != std::string::npos
                   ? std::string("a dataset name must be non-empty and without '.'")
                   : std::string();
      })
      ->capture_default_str();
  cmd->add_option("--max-clicks", args->max_clicks, "most clicks per structure")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--target", args->target, "Dice at which a structure is done")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--count", args->count, "annotate only the first N images (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--learn-wait", args->learn_wait,
                  "seconds to wait after a click for a model version trained on it (0: take the "
                  "first mask that reflects the click, e.g. for a service that does not learn)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--mask-wait", args->mask_wait,
                  "seconds to wait for a mask the protocol needs before giving up")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--evaluate", args->evaluate,
                "also send each ground truth for evaluation, so `clickdiff stats` scores every "
                "version");
  cmd->add_option("--save-masks", args->save_masks,
                  "when it leaves an image, save its mask (the service's, not the ground truth) "
                  "as the image's training label, as an annotation tool's save does: reached (a "
                  "mask that reached the target in every structure) or all (whatever it stopped "
                  "at)")
      ->check(CLI::IsMember({"reached", "all"}));
  cmd->add_option("--bootstrap", args->bootstrap,
                  "Kafka bootstrap servers (default: kafka.bootstrap_servers, then the running "
                  "service's)");
  cmd->add_option("--endpoint", args->endpoint,
                  "ZeroMQ publish endpoint (default: the running service's)");
  cmd->add_option("--query-endpoint", args->query_endpoint,
                  "ZeroMQ query endpoint (default: the running service's)");
  cmd->callback([&context, args] { Finish(context, RunAnnotate(*args, *context.out)); });
}

}  // namespace clickdiff
