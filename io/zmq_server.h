// io/zmq_server.h — the service's ZeroMQ side: an XPUB socket publishing masks as multipart
// [topic, MaskResult] (late subscribers get the current mask) and [topic, Metrics], and a ROUTER
// socket answering Query messages, over cppzmq, with optional CURVE encryption from ZmqConfig.
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
// "metrics.<dataset>": the evaluator's Metrics (per image and per model version)
std::string MetricsTopic(const std::string& dataset);

// Binds both sockets in Bind(); one thread it owns does all socket work (ZeroMQ sockets are not
// thread-safe) and is joined by the destructor.
// - Publish() may be called from any thread: it stamps the next sequence number (1, 2, ...) into
//   the MaskResult, remembers it as the topic's current mask (a preview is not remembered: the
//   current mask is the last final one, as in the store), and queues it for the socket thread.
//   It never blocks: a subscriber beyond send_high_water_mark loses messages (for that subscriber
//   only), and if the socket thread itself falls ~20000 messages behind the send is dropped with a
//   warning (the mask still becomes the topic's current one).
// - Late subscribers: when a subscription for a prefix arrives (every one, even for a prefix
//   already subscribed), the current mask of every topic matching the prefix is sent again
//   (verbatim, with its original sequence number). XPUB sends it to every matching subscriber, so a
//   subscriber may see a mask twice, or around its subscription an older mask after a newer one:
//   keep the highest sequence per topic. Resends are paced (256 masks per round of the socket
//   thread, between publishes and queries), and a subscription whose prefix already waits for its
//   resend adds none, so a peer repeating a subscription cannot multiply the work; beyond 4096
//   distinct prefixes waiting, a subscription gets no resend. The table of current masks holds
//   at most zmq.late_joiner_budget_mb of them: beyond it the masks published longest ago (lowest
//   sequence numbers) leave it and are no longer resent; the query socket answers them from the
//   store.
// - With CURVE, a ZAP handler on the same thread lets in only clients whose public keys are on
//   the allow-list (zmq.curve.client_keys, client_keys_dir); others get nothing on either socket.
// - Queries: each Query on the ROUTER socket ([Query] or [empty delimiter, Query]; the reply uses
//   the same envelope) is answered by `query_handler`, called on the owned thread (a slow handler
//   delays publishing). A malformed request, or a handler that throws, gets a QueryReply with
//   ok=false and the reason.
class ZmqServer {
 public:
  using QueryHandler = std::function<v1::QueryReply(const v1::Query& query)>;
  // Errors name the config field and endpoint: InvalidArgument for a malformed endpoint, a bad
  // CURVE key (or a public key that does not match the secret one), send_high_water_mark < 1 or
  // late_joiner_budget_mb < 0;
  // Unavailable for an address in use or not local. `handler` answers queries on the socket
  // thread; while it is empty, queries are answered with an error (not ready).
  static Result<std::unique_ptr<ZmqServer>> Bind(const ZmqConfig& config,
                                                 QueryHandler handler = nullptr);
  ~ZmqServer();  // stops the thread, closes the sockets (linger 0)
  ZmqServer(const ZmqServer&) = delete;
  ZmqServer& operator=(const ZmqServer&) = delete;

  // Replaces the query handler (empty: queries are refused again). Returns once no call of the
  // previous handler is running, so whatever it read may then go. Thread-safe; must not be called
  // from inside a handler.
  void SetQueryHandler(QueryHandler handler);

  // One request's reply, as the query socket gives it: `request` parsed as a Query and passed to
  // `handler`; ok=false naming the problem for bytes that are not a Query, an empty handler, or a
  // handler that throws or fails. The socket thread's decoder, callable alone (the fuzz target).
  static v1::QueryReply AnswerRequest(const void* request, size_t size,
                                      const QueryHandler& handler);

  // Endpoints actually bound, with the OS-chosen port ("tcp://127.0.0.1:41234").
  const std::string& publish_endpoint() const;
  const std::string& query_endpoint() const;
  // The CURVE public key clients need (Z85), empty without CURVE.
  const std::string& server_public_key() const;
  // Seeds the current-mask table (e.g. from RocksDB at start) without sending anything; replaces
  // the topic's current mask unless that has a higher sequence number, keeps the mask's own
  // number, and later numbers are stamped above it. Within the table's budget (the masks' bytes;
  // each entry also costs its topic twice and some map nodes) the masks of the highest sequence
  // numbers stay, whatever the order of the calls. Thread-safe.
  void Remember(const v1::MaskResult& mask);
  // Numbering that survives restarts, so a client keeping the highest sequence per topic never
  // drops a new mask after one: later numbers are stamped above `after` (the reservation the
  // previous run persisted), and before a number above the last reservation is stamped,
  // `reserve(upto)` (called on the publishing thread, under the server's lock, once per
  // kSequenceBlock numbers) must persist `upto` for the next run's `after`. A failed reserve is
  // logged and the mask is still published. Call before the first Publish.
  using SequenceReserve = std::function<Status(uint64_t upto)>;
  static constexpr uint64_t kSequenceBlock = 1024;  // numbers per reservation
  void ContinueSequence(uint64_t after, SequenceReserve reserve);
  // Returns the sequence number given to this message. Thread-safe; never blocks on subscribers.
  uint64_t Publish(v1::MaskResult mask);
  // Queues [MetricsTopic(dataset), Metrics] like Publish (never blocks; no sequence number, and
  // nothing is resent to late subscribers). Thread-safe.
  void PublishMetrics(const v1::Metrics& metrics);
  // Published masks the socket thread has handed to the XPUB socket so far (not counting
  // late-subscriber resends); trails Publish() by the queue's length.
  uint64_t published() const;

 private:
  struct Impl;
  explicit ZmqServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
