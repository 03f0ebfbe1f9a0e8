// services/runtime_file.h — how the CLI finds a running service without the user copying ports:
// clickdiffd writes its broker address and ZeroMQ endpoints to `clickdiffd.json` next to its
// database (the directory holding store.path) and removes it on a clean exit.
#pragma once

#include <string>

#include "base/status.h"
#include "config/config.h"
#include "io/zmq_client.h"

namespace clickdiff {

struct ServiceEndpoints {
  std::string bootstrap_servers;
  std::string publish_endpoint;
  std::string query_endpoint;
  std::string server_public_key;  // Z85, when CURVE is on
  int64_t pid = 0;
};

std::string RuntimeFilePath(const Config& config);
Status WriteRuntimeFile(const Config& config, const ServiceEndpoints& endpoints);
// Errors: kNotFound (with a hint to start clickdiffd or pass the address) when there is no file.
Result<ServiceEndpoints> ReadRuntimeFile(const Config& config);
void RemoveRuntimeFile(const Config& config);

// The Kafka bootstrap servers to use: `flag` if given, else kafka.bootstrap_servers, else the
// running service's (runtime file).
Result<std::string> ResolveBootstrap(const Config& config, const std::string& flag);

// A ZeroMQ socket of the service and how to reach it: `flag` if given (with the config's CURVE
// server key when CURVE is on), else the running service's publish or query endpoint and key.
struct ZmqTarget {
  std::string endpoint;
  ZmqClientOptions options;
};
enum class ZmqSocket { kPublish, kQuery };
Result<ZmqTarget> ResolveZmq(const Config& config, const std::string& flag, ZmqSocket socket);

}  // namespace clickdiff
