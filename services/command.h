// services/command.h — what a `clickdiff` subcommand registers with the CLI, and its helpers.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// Shared by every subcommand of one RunCli call; lives on RunCli's stack.
struct CommandContext {
  std::ostream* out = nullptr;  // results (JSON, tables)
  std::ostream* err = nullptr;  // errors for the user
  int exit_code = 0;            // set by the subcommand that ran
};

// Records `status` in `context`: exit code 0, or 1 after printing "error: <message>".
void Finish(CommandContext& context, const Status& status);

// Options every config-reading subcommand accepts: --config FILE and --set key=value (repeatable).
struct ConfigOptions {
  std::string path;
  std::vector<std::string> set;
};
void AddConfigOptions(CLI::App& command, ConfigOptions& options, bool path_required);

// Loads the config named by `options` (or $CLICKDIFF_CONFIG, or config/default.yaml when it
// exists, else the built-in defaults) with the environment and --set overrides applied.
Result<Config> LoadConfigFor(const ConfigOptions& options);

// Subcommand registration, one per services/*_command.cc.
void AddConfigCommand(CLI::App& app, CommandContext& context);
void AddInfoCommand(CLI::App& app, CommandContext& context);
void AddGenerateCommand(CLI::App& app, CommandContext& context);
void AddTrainCommand(CLI::App& app, CommandContext& context);
void AddInferCommand(CLI::App& app, CommandContext& context);
void AddEvalCommand(CLI::App& app, CommandContext& context);
void AddCalibrateCommand(CLI::App& app, CommandContext& context);
void AddBrokerCommand(CLI::App& app, CommandContext& context);
void AddProduceCommand(CLI::App& app, CommandContext& context);
void AddSubscribeCommand(CLI::App& app, CommandContext& context);
void AddStatsCommand(CLI::App& app, CommandContext& context);
void AddAnnotateCommand(CLI::App& app, CommandContext& context);
void AddKeygenCommand(CLI::App& app, CommandContext& context);

}  // namespace clickdiff
