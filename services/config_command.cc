// `clickdiff config check|dump|keys`: validate a configuration, print the effective one, list keys.
#include "config/config_loader.h"
#include "services/command.h"

namespace clickdiff {

void AddConfigCommand(CLI::App& app, CommandContext& context) {
  auto* config = app.add_subcommand("config", "check or print a configuration");
  config->require_subcommand(1);

  struct Args {
    ConfigOptions options;
    std::string file;
  };
  auto args = std::make_shared<Args>();

  auto* check = config->add_subcommand(
      "check", "validate FILE (types, ranges, unknown keys, environment and --set overrides)");
  check->add_option("file", args->file, "YAML config file")->required()->check(CLI::ExistingFile);
  check->add_option("--set", args->options.set, "override one key")->type_name("KEY=VALUE");
  check->callback([&context, args] {
    args->options.path = args->file;
    Result<Config> loaded = LoadConfigFor(args->options);
    if (loaded.ok()) {
      *context.out << "config OK: " << args->file << " (mode " << NameOf(kModeNames, loaded->mode)
                   << ", model " << model::MethodName(loaded->model.method) << ", device "
                   << model::DeviceName(loaded->compute.device) << ")\n";
    }
    Finish(context, loaded.status());
  });

  auto* dump = config->add_subcommand("dump", "print the effective configuration as YAML");
  AddConfigOptions(*dump, args->options, false);
  dump->callback([&context, args] {
    Result<Config> loaded = LoadConfigFor(args->options);
    if (loaded.ok()) *context.out << DumpConfig(*loaded);
    Finish(context, loaded.status());
  });

  auto* keys = config->add_subcommand("keys", "list every key, what it allows and its variable");
  keys->callback([&context] {
    for (const auto& [key, allowed] : DescribeConfigKeys()) {
      *context.out << key << ": " << allowed << "  [" << EnvironmentVariableFor(key) << "]\n";
    }
    context.exit_code = 0;
  });
}

}  // namespace clickdiff
