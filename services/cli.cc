#include "services/cli.h"

#include <CLI/CLI.hpp>
#include <filesystem>

#include "config/config_loader.h"
#include "services/command.h"
#include "services/logging.h"

#ifndef CLICKDIFF_VERSION
#define CLICKDIFF_VERSION "unknown"
#endif

namespace clickdiff {

void Finish(CommandContext& context, const Status& status) {
  if (status.ok()) {
    context.exit_code = 0;
    return;
  }
  *context.err << "error: " << status.message() << "\n";
  context.exit_code = 1;
}

void AddConfigOptions(CLI::App& command, ConfigOptions& options, bool path_required) {
  auto* path = command.add_option("--config", options.path,
                                  "YAML config file (default: $CLICKDIFF_CONFIG, then "
                                  "config/default.yaml, then built-in defaults)");
  if (path_required) path->required();
  command.add_option("--set", options.set, "override one key: --set model.method=gaussian_x0")
      ->type_name("KEY=VALUE");
}

Result<Config> LoadConfigFor(const ConfigOptions& options) {
  ConfigOverrides overrides{ClickdiffEnvironment(), options.set};
  std::string path = options.path;
  if (path.empty()) {
    auto env = overrides.environment.find("CLICKDIFF_CONFIG");
    if (env != overrides.environment.end()) {
      path = env->second;
    } else if (std::filesystem::exists("config/default.yaml")) {
      path = "config/default.yaml";
    }
  }
  if (path.empty()) return LoadConfigString("", "built-in defaults", overrides);
  return LoadConfigFile(path, overrides);
}

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "clickdiff: dense segmentation masks from single clicks, with a diffusion model.\n"
      "Offline tools and checks; the streaming service is clickdiffd.",
      "clickdiff"};
  app.set_version_flag("--version", std::string("clickdiff ") + CLICKDIFF_VERSION);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str();
  app.require_subcommand(1);

  CommandContext context{&out, &err, 0};
  AddConfigCommand(app, context);
  AddInfoCommand(app, context);
  AddGenerateCommand(app, context);
  AddTrainCommand(app, context);
  AddInferCommand(app, context);
  AddEvalCommand(app, context);
  AddCalibrateCommand(app, context);
  AddBrokerCommand(app, context);
  AddProduceCommand(app, context);
  AddSubscribeCommand(app, context);
  AddStatsCommand(app, context);
  AddAnnotateCommand(app, context);
  AddKeygenCommand(app, context);

  // Logging is set up before any subcommand runs (CLI11 runs the app's callback last).
  app.parse_complete_callback([&] {
    Status s = InitLogging(log_level);
    if (!s.ok()) throw CLI::ValidationError("--log-level", s.message());
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e, out, err);  // prints help, the version or the usage error
    return code == 0 ? 0 : 2;
  }
  return context.exit_code;
}

}  // namespace clickdiff
