#include "io/kafka_conf.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <utility>
#include <vector>

namespace clickdiff::kafka_internal {
namespace {

// librdkafka logs from its own threads with syslog levels; spdlog's default logger is
// thread-safe, so the service keeps one log stream and one format.
void LogToSpdlog(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  spdlog::level::level_enum spd_level = spdlog::level::debug;
  if (level <= 3) {
    spd_level = spdlog::level::err;
  } else if (level == 4) {
    spd_level = spdlog::level::warn;
  } else if (level <= 6) {
    spd_level = spdlog::level::info;
  }
  spdlog::log(spd_level, "librdkafka {} {}: {}", rd_kafka_name(rk), facility, message);
}

// The value of kafka.property_files' `name`: the content of `path` less one trailing newline.
// Errors name the key and the file, never the content (it is a secret).
Result<std::string> ReadPropertyFile(const std::string& name, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFound("kafka.property_files." + name + ": cannot read " + path + ": " +
                    std::strerror(errno));
  }
  constexpr size_t kMaxBytes = 64 * 1024;  // a password or a token, not a data file
  std::string value;
  value.resize(kMaxBytes + 1);
  in.read(value.data(), static_cast<std::streamsize>(value.size()));
  value.resize(static_cast<size_t>(in.gcount()));
  if (value.size() > kMaxBytes) {
    return InvalidArgument("kafka.property_files." + name + ": " + path + " is over 64 KiB");
  }
  if (!value.empty() && value.back() == '\n') value.pop_back();
  if (!value.empty() && value.back() == '\r') value.pop_back();
  return value;
}

}  // namespace

ConfPtr NewLoggingConf() {
  ConfPtr conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), &LogToSpdlog);
  return conf;
}

Result<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  HandlePtr handle(rd_kafka_new(type, conf.get(), errstr, sizeof(errstr)));
  if (handle == nullptr) return InvalidArgument(errstr);  // conf is still ours: freed here
  static_cast<void>(conf.release());                      // rd_kafka_new took it
  return handle;
}

Status SetProperty(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    return InvalidArgument("kafka property \"" + name + "\": " + errstr);
  }
  return Status::Ok();
}

Result<ConfPtr> BuildConf(const KafkaConfig& config, const std::string& bootstrap_override,
                          const ConfSpec& spec) {
  const std::string& bootstrap =
      bootstrap_override.empty() ? config.bootstrap_servers : bootstrap_override;
  if (bootstrap.empty()) {
    return InvalidArgument(std::string("kafka ") + spec.client_kind +
                           ": no bootstrap servers (kafka.bootstrap_servers is empty and no "
                           "override was given)");
  }
  std::set<std::string> managed = {"bootstrap.servers", "client.id"};
  for (const auto& [name, value] : spec.managed) managed.insert(name);
  std::vector<std::pair<std::string, std::string>> properties(config.properties.begin(),
                                                              config.properties.end());
  for (const auto& [name, path] : config.property_files) {
    Result<std::string> value = ReadPropertyFile(name, path);
    if (!value.ok()) return value.status();
    properties.emplace_back(name, std::move(value).value());
  }
  for (const auto& [name, value] : properties) {
    if (managed.count(name) != 0) {
      return InvalidArgument("kafka property \"" + name + "\" is set by the " + spec.client_kind +
                             " itself (bootstrap.servers and client.id come from "
                             "kafka.bootstrap_servers and kafka.client_id)");
    }
  }

  ConfPtr conf = NewLoggingConf();
  for (const auto& [name, value] : spec.defaults) {
    CLICKDIFF_RETURN_IF_ERROR(SetProperty(conf.get(), name, value));
  }
  CLICKDIFF_RETURN_IF_ERROR(SetProperty(conf.get(), "client.id", config.client_id));
  CLICKDIFF_RETURN_IF_ERROR(SetProperty(conf.get(), "bootstrap.servers", bootstrap));
  for (const auto& [name, value] : properties) {
    CLICKDIFF_RETURN_IF_ERROR(SetProperty(conf.get(), name, value));
  }
  for (const auto& [name, value] : spec.managed) {
    CLICKDIFF_RETURN_IF_ERROR(SetProperty(conf.get(), name, value));
  }
  return conf;
}

std::string TopicPartitionName(const std::string& topic, int32_t partition) {
  return topic + " [" + std::to_string(partition) + "]";
}

std::string FatalErrorMessage(rd_kafka_t* rk) {
  char reason[512];
  const rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk, reason, sizeof(reason));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return "fatal error (reason not available)";
  return std::string(rd_kafka_err2name(err)) + ": " + reason;
}

}  // namespace clickdiff::kafka_internal
