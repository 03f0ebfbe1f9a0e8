// io/zmq_server.h — the service's ZeroMQ side: an XPUB socket publishing masks as multipart
// [topic, MaskResult] (late subscribers get the current mask) and a ROUTER socket answering Query
// messages, over cppzmq, with optional CURVE encryption from ZmqConfig.
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

// "mask.<dataset>.<image_id>"
std::string MaskTopic(const std::string& dataset, const std::string& image_id);

// Binds both sockets at construction; one thread it owns does all socket work.
// - Publish() may be called from any thread: it stamps the next sequence number (1, 2, ...) into
//   the MaskResult, remembers it as the topic's current mask, and queues it for sending. A slow
//   subscriber never blocks it (messages beyond send_high_water_mark are dropped for that
//   subscriber only).
// - Late subscribers: when a subscription for a prefix arrives, the current mask of every topic
//   matching the prefix is sent again (verbatim, with its original sequence number).
// - Queries: each Query on the ROUTER socket is answered by `query_handler` (called on the owned
//   thread); a malformed request gets a QueryReply with ok=false and the reason.
class ZmqServer {
 public:
  using QueryHandler = std::function<v1::QueryReply(const v1::Query& query)>;
  static Result<std::unique_ptr<ZmqServer>> Bind(const ZmqConfig& config, QueryHandler handler);
  ~ZmqServer();  // stops the thread, closes the sockets (linger 0)
  ZmqServer(const ZmqServer&) = delete;
  ZmqServer& operator=(const ZmqServer&) = delete;

  // Endpoints actually bound, with the OS-chosen port ("tcp://127.0.0.1:41234").
  const std::string& publish_endpoint() const;
  const std::string& query_endpoint() const;
  // Seeds the current-mask table (e.g. from RocksDB at start) without sending anything.
  void Remember(const v1::MaskResult& mask);
  // Returns the sequence number given to this message.
  uint64_t Publish(v1::MaskResult mask);
  uint64_t published() const;

 private:
  struct Impl;
  explicit ZmqServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
