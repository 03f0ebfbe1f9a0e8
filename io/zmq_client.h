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

// Client-side CURVE settings: the server's public key, and the client's own key pair (Z85), which
// the server's allow-list must hold; without one a fresh pair is generated per connection.
struct ZmqClientOptions {
  std::string server_public_key;  // Z85; empty: no CURVE
  std::string client_public_key;
  std::string client_secret_key;
};

// Subscribes to masks published by ZmqServer. Not thread-safe: use it from one thread at a time.
// A mask may arrive twice (see ZmqServer's late-subscriber resend): keep the highest sequence.
class MaskSubscriber {
 public:
  // Connects to `endpoint` and subscribes to `prefix` (e.g. "mask." or "mask.ds.img7"). The
  // connection and subscription complete in the background (a few ms): masks published before
  // that are missed, but the server resends the current mask of each matching topic once the
  // subscription arrives. InvalidArgument for a malformed endpoint or server key. With CURVE and a
  // wrong server key nothing is ever received (the handshake fails silently).
  static Result<std::unique_ptr<MaskSubscriber>> Connect(const std::string& endpoint,
                                                         const std::string& prefix,
                                                         const ZmqClientOptions& options = {});
  ~MaskSubscriber();
  // Waits up to `timeout` for the next mask; nullopt on timeout, InvalidArgument naming the topic
  // for a message that is not [topic, MaskResult] (the next call reads the next message).
  Result<std::optional<v1::MaskResult>> Receive(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit MaskSubscriber(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Asks ZmqServer's query socket (DEALER; one outstanding query at a time). Not thread-safe: use it
// from one thread at a time.
class QueryClient {
 public:
  static Result<std::unique_ptr<QueryClient>> Connect(const std::string& endpoint,
                                                      const ZmqClientOptions& options = {});
  ~QueryClient();
  // Sends one query and waits up to `timeout` for its reply: Unavailable "no reply from <endpoint>
  // within N ms" on timeout, InvalidArgument for a reply that is not a QueryReply. After a timeout
  // the socket is replaced (new identity, reconnect), so a late reply is dropped by the server
  // instead of being read as the answer to the next query.
  Result<v1::QueryReply> Ask(const v1::Query& query, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit QueryClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
