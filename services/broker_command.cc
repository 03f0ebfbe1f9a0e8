// `clickdiff broker`: runs the embedded Kafka-protocol broker (librdkafka's mock cluster) on its
// own, with the service's topics created, and prints its address; it serves until SIGINT/SIGTERM.
// Useful to keep the broker (and the events in it) alive while clickdiffd restarts. With
// --faults PLAN it shows the plan's faults (io/broker_faults.h) at their times: the chaos suite's
// broker faults (ops/chaos/faults.sh).
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "io/broker_faults.h"
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
  std::string faults;  // a fault plan's file; empty: none
};

Status RunBroker(const BrokerArgs& args, std::ostream& out) {
  Result<Config> config = LoadConfigFor(args.config);
  if (!config.ok()) return config.status();
  const int brokers = args.brokers > 0 ? args.brokers : config->kafka.embedded_brokers;
  const int partitions = args.partitions > 0 ? args.partitions : config->kafka.partitions;
  std::vector<BrokerFault> plan;
  if (!args.faults.empty()) {
    Result<std::vector<BrokerFault>> loaded = LoadBrokerFaults(args.faults, brokers);
    if (!loaded.ok()) return loaded.status();
    plan = *std::move(loaded);
  }
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
  if (!plan.empty()) {
    spdlog::info("broker faults: {} in the plan, from now on", plan.size());
    // A fault that could not be applied ends the plan, not the broker: its clients go on.
    const Status ran = RunBrokerFaults(**broker, plan, [] { return g_broker_stop.load(); });
    if (!ran.ok()) spdlog::error("broker faults: the plan stopped: {}", ran.ToString());
    if (!g_broker_stop.load()) spdlog::info("broker faults: the plan is over");
  }
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
  cmd->add_option("--faults", args->faults,
                  "a YAML plan of faults to show, timed from the start: a list of "
                  "{at: S, down: S [, broker: ID]}, {at: S, slow: S, rtt_ms: MS [, broker: ID]} "
                  "and {at: S, errors: N, request: NAME, error: KAFKA_ERROR} (requests: " +
                      BrokerFaultRequests() + ")")
      ->check(CLI::ExistingFile);
  cmd->callback([&context, args] { Finish(context, RunBroker(*args, *context.out)); });
}

}  // namespace clickdiff
