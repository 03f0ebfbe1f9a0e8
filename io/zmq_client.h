// io/zmq_client.h — client-side ZeroMQ: a mask subscriber and a query client (used by the CLI,
// tests and any C++ viewer). CURVE is used when the server's public key is given.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "config/config.h"
#include "schemas/events.pb.h"

namespace clickdiff {

// Client-side CURVE settings: the server's public key; the client's own key pair is generated.
struct ZmqClientOptions {
  std::string server_public_key;  // Z85; empty: no CURVE
};

// Subscribes to masks published by ZmqServer.
class MaskSubscriber {
 public:
  // Connects to `endpoint` and subscribes to `prefix` (e.g. "mask." or "mask.ds.img7").
  static Result<std::unique_ptr<MaskSubscriber>> Connect(const std::string& endpoint,
                                                         const std::string& prefix,
                                                         const ZmqClientOptions& options = {});
  ~MaskSubscriber();
  // Waits up to `timeout` for the next mask; nullopt on timeout, an error for a message that is
  // not [topic, MaskResult].
  Result<std::optional<v1::MaskResult>> Receive(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit MaskSubscriber(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Asks ZmqServer's query socket (DEALER; one outstanding query at a time).
class QueryClient {
 public:
  static Result<std::unique_ptr<QueryClient>> Connect(const std::string& endpoint,
                                                      const ZmqClientOptions& options = {});
  ~QueryClient();
  // Sends one query and waits up to `timeout` for its reply (Unavailable on timeout).
  Result<v1::QueryReply> Ask(const v1::Query& query, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit QueryClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
