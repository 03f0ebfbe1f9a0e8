// config/config_loader.h — loads, overrides and validates a clickdiff Config.
//
// Sources, later ones winning: the struct defaults (config/config.h), the YAML file, environment
// variables `CLICKDIFF_<KEY>` (the key upper-cased with '.' -> '_', e.g. CLICKDIFF_MODEL_METHOD),
// then `--set key=value` arguments in order. Values from the environment and from --set are YAML
// scalars or flow collections (`--set model.class_names=[bg,lv]`). A key inside a pass-through map
// is addressed by its full path: `--set kafka.properties.sasl.mechanism=PLAIN`.
//
// Every key has a type and an allowed range; unknown keys, wrong types and out-of-range values are
// rejected with an error that names the source (file:line, variable or argument), the key and what
// is allowed. Stateless free functions; safe to call from any thread.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// Overrides applied on top of the file.
struct ConfigOverrides {
  // CLICKDIFF_* environment variables (name -> value). Any other CLICKDIFF_ name than a config key
  // or CLICKDIFF_CONFIG is an error, so a misspelt variable is not silently ignored.
  std::map<std::string, std::string> environment;
  // "key=value" strings from --set, applied in order after the environment.
  std::vector<std::string> set;
};

// The CLICKDIFF_* variables of this process's environment.
std::map<std::string, std::string> ClickdiffEnvironment();

// Reads the YAML file at `path` and applies `overrides`. Errors: kNotFound if the file cannot be
// read; kInvalidArgument for malformed YAML, unknown keys, wrong types, out-of-range values and
// inconsistent combinations, each naming the key.
Result<Config> LoadConfigFile(const std::string& path, const ConfigOverrides& overrides = {});

// As LoadConfigFile, from YAML text; `source` names it in error messages.
Result<Config> LoadConfigString(const std::string& yaml, const std::string& source,
                                const ConfigOverrides& overrides = {});

// Whether a configuration key holds a secret: zmq.curve.server_secret_key, and librdkafka
// properties whose name says password, secret or private key (sasl.password,
// ssl.key.password, ssl.keystore.password, ssl.key.pem, sasl.oauthbearer.client.secret,
// sasl.oauthbearer.config, ...). Full keys: "kafka.properties.sasl.password".
bool IsSecretConfigKey(const std::string& key);

// The effective configuration as YAML (every key, in table order); loads back to an equal Config,
// except that secrets that are set (IsSecretConfigKey) read "<redacted>" unless `show_secrets`.
std::string DumpConfig(const Config& config, bool show_secrets = false);

// Every key with its allowed values, one "key: allowed" line each, for --help texts.
std::vector<std::pair<std::string, std::string>> DescribeConfigKeys();

// The environment variable that overrides `key`.
std::string EnvironmentVariableFor(const std::string& key);

}  // namespace clickdiff
