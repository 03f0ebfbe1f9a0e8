// `clickdiff broker`: runs the embedded Kafka-protocol broker (librdkafka's mock cluster) on its
// own, with the service's topics created, and prints its address; it serves until SIGINT/SIGTERM.
// Useful to keep the broker (and the events in it) alive while clickdiffd restarts.
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "io/embedded_broker.h"
#include "services/command.h"
#include "services/service.h"

namespace clickdiff {
namespace {

std::atomic<bool> g_broker_stop{false};  // reached from the signal handler only
extern "C" void OnBrokerSignal(int) { g_broker_stop.store(true); }

struct BrokerArgs {
  ConfigOptions config;
  int brokers = 0;     // 0: kafka.embedded_brokers
  int partitions = 0;  // 0: kafka.partitions
};

Status RunBroker(const BrokerArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  const int brokers = args.brokers > 0 ? args.brokers : config->kafka.embedded_brokers;
  const int partitions = args.partitions > 0 ? args.partitions : config->kafka.partitions;
  Result<std::unique_ptr<EmbeddedBroker>> broker = EmbeddedBroker::Start(brokers);
  if (!broker.ok()) return broker.status();
  for (const std::string& topic : ServiceTopics(config->kafka)) {
    CLICKDIFF_RETURN_IF_ERROR((*broker)->CreateTopic(topic, partitions));
  }
  std::signal(SIGINT, OnBrokerSignal);
  std::signal(SIGTERM, OnBrokerSignal);
  out << (*broker)->bootstrap_servers() << std::endl;
  spdlog::info(
      "embedded Kafka broker ({} broker(s), {} partition(s) per topic) at {}; Ctrl-C "
      "stops it",
      brokers, partitions, (*broker)->bootstrap_servers());
  while (!g_broker_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return Status::Ok();
}

}  // namespace

void AddBrokerCommand(CLI::App& app, CommandContext& context) {
  auto args = std::make_shared<BrokerArgs>();
  auto* cmd = app.add_subcommand(
      "broker", "run the embedded Kafka-protocol broker and print its address (until Ctrl-C)");
  AddConfigOptions(*cmd, args->config, false);
  cmd->add_option("--brokers", args->brokers,
                  "brokers in the cluster (default: kafka.embedded_brokers)")
      ->check(CLI::Range(1, 16));
  cmd->add_option("--partitions", args->partitions,
                  "partitions per topic (default: kafka.partitions)")
      ->check(CLI::Range(1, 1024));
  cmd->callback([&context, args] { Finish(context, RunBroker(*args, *context.out)); });
}

}  // namespace clickdiff
