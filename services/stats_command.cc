// `clickdiff stats`: the learning curve of a running service — the evaluator's per-version
// aggregate (nodes/evaluator.h) of each dataset and the fresh clicks each version's masks held
// (nodes/click_intake.h: no ground truth needed), asked over the query socket, as a table or JSON.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/zmq_client.h"
#include "services/command.h"
#include "services/runtime_file.h"

namespace clickdiff {
namespace {

struct StatsArgs {
  ConfigOptions config;
  std::string endpoint;
  std::string dataset;
  bool json = false;
  double timeout = 10;
};

nlohmann::json ToJson(const v1::Metrics& m) {
  nlohmann::json classes = nlohmann::json::array();
  for (const v1::ClassScore& c : m.classes()) {
    classes.push_back({{"class_id", c.class_id()},
                       {"dice", c.dice()},
                       {"iou", c.iou()},
                       {"hd95", c.hd95()},
                       {"precision", c.precision()},
                       {"recall", c.recall()}});
  }
  auto mean_or_null = [](uint32_t n, double dice) {
    return n == 0 ? nlohmann::json(nullptr) : nlohmann::json(dice);
  };
  return {{"dataset", m.dataset()},
          {"model_version", m.model_version()},
          {"clicks_seen", m.clicks_seen()},
          {"images", m.images()},
          {"mean_dice", m.mean_dice()},
          {"mean_iou", m.mean_iou()},
          {"mean_hd95", m.mean_hd95()},
          {"clicked_images", m.clicked_images()},
          {"clicked_dice", mean_or_null(m.clicked_images(), m.clicked_mean_dice())},
          {"unclicked_images", m.unclicked_images()},
          {"unclicked_dice", mean_or_null(m.unclicked_images(), m.unclicked_mean_dice())},
          {"classes", classes},
          {"fresh_clicks",
           {{"tested", m.fresh_clicks().tested()},
            {"hits", m.fresh_clicks().hits()},
            {"first_tested", m.fresh_clicks().first_tested()},
            {"first_hits", m.fresh_clicks().first_hits()},
            {"negative_tested", m.fresh_clicks().negative_tested()},
            {"negative_hits", m.fresh_clicks().negative_hits()}}}};
}

// "hits/tested", or "-" when no click was tested.
std::string HitCell(uint64_t hits, uint64_t tested) {
  if (tested == 0) return "-";
  return std::to_string(hits) + "/" + std::to_string(tested);
}

void PrintTable(const std::vector<v1::Metrics>& metrics, std::ostream& out) {
  char line[256];
  std::snprintf(line, sizeof line, "%-12s %7s %7s %6s %6s %6s %7s %16s %16s %11s %11s %11s\n",
                "dataset", "version", "clicks", "images", "Dice", "IoU", "HD95", "clicked (n) Dice",
                "unclicked (n)", "click hits", "first hits", "neg. hits");
  out << line;
  auto part = [](uint32_t n, double dice) {
    char cell[32];
    if (n == 0) {
      std::snprintf(cell, sizeof cell, "(0) -");
    } else {
      std::snprintf(cell, sizeof cell, "(%u) %.3f", n, dice);
    }
    return std::string(cell);
  };
  for (const v1::Metrics& m : metrics) {
    const v1::ClickChecks& fresh = m.fresh_clicks();
    auto score = [&](const char* format, double value) {  // "-" for a version without scores
      char cell[32] = "-";
      if (m.images() > 0) std::snprintf(cell, sizeof cell, format, value);
      return std::string(cell);
    };
    std::snprintf(line, sizeof line, "%-12s %7llu %7llu %6u %6s %6s %7s %16s %16s %11s %11s %11s\n",
                  m.dataset().c_str(), static_cast<unsigned long long>(m.model_version()),
                  static_cast<unsigned long long>(m.clicks_seen()), m.images(),
                  score("%.3f", m.mean_dice()).c_str(), score("%.3f", m.mean_iou()).c_str(),
                  score("%.1f", m.mean_hd95()).c_str(),
                  part(m.clicked_images(), m.clicked_mean_dice()).c_str(),
                  part(m.unclicked_images(), m.unclicked_mean_dice()).c_str(),
                  HitCell(fresh.hits(), fresh.tested()).c_str(),
                  HitCell(fresh.first_hits(), fresh.first_tested()).c_str(),
                  HitCell(fresh.negative_hits(), fresh.negative_tested()).c_str());
    out << line;
  }
  if (metrics.empty()) {
    out << "no evaluated masks or tested clicks yet (send labels with for_evaluation set, or "
           "clicks on images that have a mask)\n";
  }
}

Status RunStats(const StatsArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  Result<ZmqTarget> target = ResolveZmq(*config, args.endpoint, ZmqSocket::kQuery);
  if (!target.ok()) return target.status();
  Result<std::unique_ptr<QueryClient>> client =
      QueryClient::Connect(target->endpoint, target->options);
  if (!client.ok()) return client.status();
  v1::Query query;
  query.set_kind(v1::Query::KIND_METRICS);
  query.set_dataset(args.dataset);
  Result<v1::QueryReply> reply = (*client)->Ask(
      query, std::chrono::milliseconds(static_cast<int64_t>(std::llround(args.timeout * 1000))));
  if (!reply.ok()) return reply.status();
  if (!reply->ok()) return Unavailable("the service answered: " + reply->error());
  std::vector<v1::Metrics> metrics(reply->metrics().begin(), reply->metrics().end());
  if (!args.json) {
    PrintTable(metrics, out);
    return Status::Ok();
  }
  nlohmann::json versions = nlohmann::json::array();
  for (const v1::Metrics& m : metrics) versions.push_back(ToJson(m));
  out << nlohmann::json({{"dataset", args.dataset}, {"versions", versions}}).dump(2) << "\n";
  return Status::Ok();
}

}  // namespace

void AddStatsCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<StatsArgs>();
  auto* cmd = app.add_subcommand(
      "stats", "the learning curve of a running service: evaluation per dataset and model version");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--endpoint", args->endpoint,
                  "ZeroMQ query endpoint (default: the running service's)");
  cmd->add_option("--dataset", args->dataset, "only this dataset");
  cmd->add_flag("--json", args->json, "print JSON instead of a table");
  cmd->add_option("--timeout", args->timeout, "seconds to wait for the service's answer")
      ->check(CLI::PositiveNumber);
  cmd->callback([&context, args] { Finish(context, RunStats(*args, *context.out)); });
}

}  // namespace clickdiff
