#include "services/runtime_file.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/curve_key.h"

namespace clickdiff {

namespace fs = std::filesystem;

std::string RuntimeFilePath(const Config& config) {
  fs::path db = fs::path(config.store.path).lexically_normal();
  if (db.has_filename() == false) db = db.parent_path();
  return (db.parent_path() / "clickdiffd.json").string();
}

Status WriteRuntimeFile(const Config& config, const ServiceEndpoints& e) {
  const std::string path = RuntimeFilePath(config);
  nlohmann::json j = {{"bootstrap_servers", e.bootstrap_servers},
                      {"publish_endpoint", e.publish_endpoint},
                      {"query_endpoint", e.query_endpoint},
                      {"server_public_key", e.server_public_key},
                      {"pid", e.pid}};
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) return Unavailable(tmp + ": cannot write the runtime file");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);  // atomic: a reader never sees half a file
  if (ec) return Unavailable(path + ": " + ec.message());
  return Status::Ok();
}

Result<ServiceEndpoints> ReadRuntimeFile(const Config& config) {
  const std::string path = RuntimeFilePath(config);
  std::ifstream in(path);
  if (!in) {
    return NotFound(path +
                    ": no running clickdiffd found (start it with `clickdiffd`, or pass "
                    "the address explicitly)");
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(path + ": not valid JSON");
  ServiceEndpoints e;
  e.bootstrap_servers = j.value("bootstrap_servers", "");
  e.publish_endpoint = j.value("publish_endpoint", "");
  e.query_endpoint = j.value("query_endpoint", "");
  e.server_public_key = j.value("server_public_key", "");
  e.pid = j.value("pid", int64_t{0});
  return e;
}

void RemoveRuntimeFile(const Config& config) {
  std::error_code ec;
  fs::remove(RuntimeFilePath(config), ec);
}

Result<std::string> ResolveBootstrap(const Config& config, const std::string& flag) {
  if (!flag.empty()) return flag;
  if (!config.kafka.bootstrap_servers.empty()) return config.kafka.bootstrap_servers;
  Result<ServiceEndpoints> running = ReadRuntimeFile(config);
  if (!running.ok()) return running.status();
  if (running->bootstrap_servers.empty()) {
    return NotFound(RuntimeFilePath(config) + ": holds no broker address");
  }
  return running->bootstrap_servers;
}

Result<ZmqTarget> ResolveZmq(const Config& config, const std::string& flag, ZmqSocket socket) {
  const ZmqCurveConfig& curve = config.zmq.curve;
  ZmqTarget target;
  if (!flag.empty()) {
    target.endpoint = flag;
    if (curve.enabled) {
      target.options.server_public_key = curve.server_public_key;
      if (curve.server_public_key.empty()) {
        // The public half (FILE.pub) where the server's secret file is not this user's to read.
        const std::string pub = curve.server_key_file + ".pub";
        Result<CurveKeyPair> server = ReadCurveKeyFile(pub);
        if (!server.ok()) server = ReadCurveKeyFile(curve.server_key_file);
        if (!server.ok()) return server.status().WithContext("zmq.curve.server_key_file");
        target.options.server_public_key = server->public_key;
      }
    }
  } else {
    Result<ServiceEndpoints> running = ReadRuntimeFile(config);
    if (!running.ok()) return running.status();
    target.endpoint =
        socket == ZmqSocket::kPublish ? running->publish_endpoint : running->query_endpoint;
    target.options.server_public_key = running->server_public_key;
  }
  if (!target.options.server_public_key.empty() && !curve.client_key_file.empty()) {
    Result<CurveKeyPair> own = ReadCurveKeyPairFile(curve.client_key_file);
    if (!own.ok()) return own.status().WithContext("zmq.curve.client_key_file");
    target.options.client_public_key = own->public_key;
    target.options.client_secret_key = own->secret_key;
  }
  return target;
}

}  // namespace clickdiff
