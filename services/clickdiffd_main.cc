// clickdiffd — the streaming service. SIGINT/SIGTERM stop it cleanly (exit 0).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include "services/command.h"
#include "services/logging.h"
#include "services/service.h"

namespace {
std::atomic<bool> g_stop{false};  // the one global: a signal handler can reach nothing else
extern "C" void OnSignal(int) { g_stop.store(true); }

int Run(int argc, char** argv) {
  CLI::App app{"clickdiffd: single-click diffusion segmentation service"};
  clickdiff::ConfigOptions config_options;
  clickdiff::AddConfigOptions(app, config_options, false);
  CLI11_PARSE(app, argc, argv);
  clickdiff::Result<clickdiff::Config> config = clickdiff::LoadConfigFor(config_options);
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 1;
  }
  if (clickdiff::Status logging = clickdiff::InitLogging(config->logging.level); !logging.ok()) {
    std::cerr << "error: " << logging.message() << "\n";
    return 1;
  }
  static_assert(std::atomic<bool>::is_always_lock_free);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  auto service = clickdiff::Service::Start(*config);
  if (!service.ok()) {
    spdlog::error("{}", service.status().ToString());
    return 1;
  }
  while (!g_stop.load() && (*service)->health().ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (clickdiff::Status status = (*service)->Stop(); !status.ok()) {
    spdlog::error("{}", status.ToString());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {  // the service's own errors are Statuses: a bug
    std::cerr << "clickdiffd: unexpected exception: " << e.what() << "\n";
  } catch (...) {
    std::cerr << "clickdiffd: unexpected exception\n";
  }
  return 1;
}
