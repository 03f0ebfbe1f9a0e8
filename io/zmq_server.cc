#include "io/zmq_server.h"

#include <spdlog/spdlog.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "base/guard.h"
#include "io/curve_key.h"

namespace clickdiff {
namespace {

// The socket thread wakes at least this often to notice the stop flag even if the wake-up message
// could not be queued (the in-process queue was full).
constexpr std::chrono::milliseconds kPollInterval{50};
// Messages handled per socket per poll round, so a flood on one socket cannot starve the others.
constexpr int kBatch = 256;
// High-water mark of each end of the in-process Publish() queue (an inproc pipe holds roughly the
// sum). Only reached if the socket thread stalls (e.g. a slow query handler); Publish() then drops
// the send (the mask stays the topic's current one) instead of blocking.
constexpr int kQueueHighWaterMark = 10000;
// The largest message a peer may send the server (a subscription or a Query).
constexpr int64_t kMaxIncomingBytes = 64 * 1024;
constexpr char kQueueEndpoint[] = "inproc://clickdiff-zmq-server-publish-queue";
// Where libzmq asks a context's ZAP handler about each handshake (RFC 27).
constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";
// Distinct prefixes whose late-subscriber resend may wait at once, and the longest prefix resent
// (a mask topic is "mask.<dataset>.<image_id>", each id at most 128 characters); a subscription
// beyond either gets no resend (counted and logged).
constexpr size_t kMaxWaitingResends = 4096;
constexpr size_t kMaxResentPrefix = 512;
// First byte of an XPUB subscription message (0 is an unsubscription).
constexpr uint8_t kSubscribe = 1;

// Maps a bind failure to a Status naming the config field and the endpoint.
Status BindError(const std::string& field, const std::string& endpoint, const zmq::error_t& e) {
  std::string message = "cannot bind " + field + " " + endpoint + ": " + e.what();
  switch (e.num()) {
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO:
    case ENODEV:
      return InvalidArgument(std::move(message));
    default:  // EADDRINUSE, EADDRNOTAVAIL, ...: the endpoint is fine, the address is not free
      return Unavailable(std::move(message));
  }
}

Status BindSocket(zmq::socket_t& socket, const std::string& field, const std::string& endpoint,
                  std::string* bound) {
  try {
    socket.bind(endpoint);
    // With port "*" only the socket knows the port the OS chose.
    *bound = socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return BindError(field, endpoint, e);
  }
  return Status::Ok();
}

// Whether the `count`th occurrence of something is logged: the 1st, 2nd, 4th, 8th..., so a peer
// repeating it cannot fill the log.
bool LogThisOne(uint64_t count) { return (count & (count - 1)) == 0; }

zmq::message_t ToMessage(const std::string& bytes) {
  return zmq::message_t(bytes.data(), bytes.size());
}

// Replaces `parts` with the next multipart message if one is waiting; false if none is.
bool ReceiveNow(zmq::socket_t& socket, std::vector<zmq::message_t>* parts) {
  parts->clear();
  return zmq::recv_multipart(socket, std::back_inserter(*parts), zmq::recv_flags::dontwait)
      .has_value();
}

}  // namespace

std::string MaskTopic(const std::string& dataset, const std::string& image_id) {
  return "mask." + dataset + "." + image_id;
}

std::string MetricsTopic(const std::string& dataset) { return "metrics." + dataset; }

struct ZmqServer::Impl {
  explicit Impl(QueryHandler query_handler) : handler(std::move(query_handler)) {}

  ~Impl() {
    if (!thread.joinable()) return;  // Bind failed before the thread started
    stop.store(true);
    Wake();
    thread.join();
    // Sockets (linger 0) and then the context close as members are destroyed.
  }

  // Creates the sockets on the calling thread; the socket thread takes them over when started
  // (thread creation orders these writes before its first use of them).
  Status Open(const ZmqConfig& config);
  void Loop();
  void ForwardQueued();
  void AnswerSubscriptions();
  void ResendSome();
  bool Resending() const { return resend_prefix.has_value() || !resend_queue.empty(); }
  void AnswerQueries();
  void AnswerHandshakes();
  v1::QueryReply Answer(const zmq::message_t& request);
  void Wake();
  // Makes `bytes` the current mask of `topic` (sequence `seq`), then lets the masks published
  // longest ago go until the table fits its budget. Caller holds `mu`.
  void RememberLocked(const std::string& topic, std::shared_ptr<const std::string> bytes,
                      uint64_t seq);
  // Queues [topic, bytes] for the socket thread without blocking. Caller holds `mu`.
  void QueueLocked(const std::string& topic, const std::string& bytes);

  // Taken by the socket thread for each query and by SetQueryHandler to swap it.
  std::mutex handler_mu;
  QueryHandler handler;    // GUARDED_BY(handler_mu); empty: queries are refused
  zmq::context_t context;  // declared before the sockets: closed after all of them
  // Used only by the socket thread once it runs.
  zmq::socket_t xpub;
  zmq::socket_t router;
  zmq::socket_t queue_out;  // PULL end of the Publish() queue
  zmq::socket_t zap;        // REP: the ZAP handler, bound only with CURVE
  std::set<CurveKey> allowed_clients;
  uint64_t refused_clients = 0;
  // Late-subscriber resends, paced (socket thread only): the prefix in progress goes out kBatch
  // masks per poll round, from the topic after `resend_after` on; a prefix already waiting is not
  // queued again, since one resend reaches every subscriber of it.
  std::optional<std::string> resend_prefix;
  std::optional<std::string> resend_after;
  std::deque<std::string> resend_queue;
  std::set<std::string> resend_waiting;
  uint64_t resends_dropped = 0;
  std::string publish_endpoint;
  std::string query_endpoint;
  std::string server_public_key;  // Z85; empty without CURVE

  std::mutex mu;
  // PUSH end of the Publish() queue. GUARDED_BY(mu): Publish() runs on any thread.
  zmq::socket_t queue_in;
  // Topic -> serialized current MaskResult. GUARDED_BY(mu). Values are shared so the socket
  // thread can copy a mask out without holding `mu`. Bounded by `table_budget` bytes: beyond it
  // the masks of the lowest sequence numbers (published longest ago) leave (`by_sequence`).
  struct Current {
    std::shared_ptr<const std::string> bytes;
    uint64_t sequence = 0;
  };
  std::map<std::string, Current> current;
  // GUARDED_BY(mu): (sequence, topic) of every mask in `current`, oldest first (masks reloaded
  // from an old store may share a number).
  std::set<std::pair<uint64_t, std::string>> by_sequence;
  size_t table_bytes = 0;      // GUARDED_BY(mu): the masks' bytes in `current`
  size_t table_budget = 0;     // set by Open
  uint64_t table_evicted = 0;  // GUARDED_BY(mu)
  uint64_t sequence = 0;     // GUARDED_BY(mu): stamped with the table update and queueing, in order
  uint64_t reserved = 0;     // GUARDED_BY(mu): numbers up to this one are persisted as used
  SequenceReserve reserve;   // GUARDED_BY(mu); empty: numbers are not persisted
  uint64_t queue_drops = 0;  // GUARDED_BY(mu)

  std::atomic<uint64_t> published{0};  // messages handed to XPUB by the socket thread
  std::atomic<bool> stop{false};
  std::thread thread;  // last: started once everything above exists
};

Status ZmqServer::Impl::Open(const ZmqConfig& config) {
  if (config.send_high_water_mark < 1) {
    return InvalidArgument("zmq.send_high_water_mark: must be at least 1, got " +
                           std::to_string(config.send_high_water_mark));
  }
  if (config.late_joiner_budget_mb < 0) {
    return InvalidArgument("zmq.late_joiner_budget_mb: must be 0 or more, got " +
                           std::to_string(config.late_joiner_budget_mb));
  }
  table_budget = static_cast<size_t>(config.late_joiner_budget_mb) << 20;
  std::optional<CurveKey> secret;
  if (config.curve.enabled) {
    if (zmq_has("curve") == 0) {
      return Unavailable("zmq.curve.enabled: this libzmq was built without CURVE (libsodium)");
    }
    Result<CurveKeyPair> pair = ServerKeyPair(config.curve);
    if (!pair.ok()) return pair.status();
    secret = *DecodeCurveKey(pair->secret_key, "zmq.curve.server_secret_key");
    server_public_key = pair->public_key;
    Result<std::set<CurveKey>> allowed = AllowedClientKeys(config.curve);
    if (!allowed.ok()) return allowed.status();
    if (allowed->empty()) {
      return InvalidArgument(
          "zmq.curve: no client may connect: list their public keys in zmq.curve.client_keys or "
          "put their .pub files in zmq.curve.client_keys_dir (clickdiff keygen makes them)");
    }
    allowed_clients = std::move(allowed).value();
  }
  try {
    xpub = zmq::socket_t(context, zmq::socket_type::xpub);
    router = zmq::socket_t(context, zmq::socket_type::router);
    queue_out = zmq::socket_t(context, zmq::socket_type::pull);
    queue_in = zmq::socket_t(context, zmq::socket_type::push);
    for (zmq::socket_t* s : {&xpub, &router, &queue_out, &queue_in}) {
      s->set(zmq::sockopt::linger, 0);
    }
    // Verbose: every subscriber's subscription reaches us, even for a topic already subscribed,
    // so each late subscriber triggers the resend of current masks. No XPUB_NODROP: a subscriber
    // above the high-water mark loses messages instead of blocking the sender.
    xpub.set(zmq::sockopt::xpub_verbose, 1);
    xpub.set(zmq::sockopt::sndhwm, config.send_high_water_mark);
    // Peers are not trusted: a message above the limit (subscriptions and queries are small)
    // disconnects its sender instead of being buffered.
    for (zmq::socket_t* s : {&xpub, &router}) s->set(zmq::sockopt::maxmsgsize, kMaxIncomingBytes);
    if (secret) {
      // Bound before any socket can take a handshake: from then on libzmq asks it about each one.
      zap = zmq::socket_t(context, zmq::socket_type::rep);
      zap.set(zmq::sockopt::linger, 0);
      zap.bind(kZapEndpoint);
      for (zmq::socket_t* s : {&xpub, &router}) {
        s->set(zmq::sockopt::curve_server, 1);
        s->set(zmq::sockopt::curve_secretkey, zmq::const_buffer(secret->data(), secret->size()));
      }
    }
    queue_out.set(zmq::sockopt::rcvhwm, kQueueHighWaterMark);
    queue_in.set(zmq::sockopt::sndhwm, kQueueHighWaterMark);
    // The inproc name is per context, and each server has its own context.
    queue_out.bind(kQueueEndpoint);
    queue_in.connect(kQueueEndpoint);
  } catch (const zmq::error_t& e) {
    return Internal(std::string("creating ZeroMQ sockets: ") + e.what());
  }
  CLICKDIFF_RETURN_IF_ERROR(
      BindSocket(xpub, "zmq.publish_endpoint", config.publish_endpoint, &publish_endpoint));
  CLICKDIFF_RETURN_IF_ERROR(
      BindSocket(router, "zmq.query_endpoint", config.query_endpoint, &query_endpoint));
  return Status::Ok();
}

void ZmqServer::Impl::Loop() {
  // Without CURVE there is no ZAP socket, and its item (a null socket means file descriptor 0)
  // is left out of the poll.
  std::array<zmq::pollitem_t, 4> items = {{
      {xpub.handle(), 0, ZMQ_POLLIN, 0},
      {router.handle(), 0, ZMQ_POLLIN, 0},
      {queue_out.handle(), 0, ZMQ_POLLIN, 0},
      {zap.handle(), 0, ZMQ_POLLIN, 0},
  }};
  const size_t polled = zap ? items.size() : items.size() - 1;
  while (!stop.load()) {
    try {
      zmq::poll(items.data(), polled, Resending() ? std::chrono::milliseconds(0) : kPollInterval);
      if (polled == items.size() && (items[3].revents & ZMQ_POLLIN)) AnswerHandshakes();
      // Queued publishes first, so a subscription in the same round is answered after them and a
      // new subscriber's resent mask is rarely followed by an older live one.
      if (items[2].revents & ZMQ_POLLIN) ForwardQueued();
      if (items[0].revents & ZMQ_POLLIN) AnswerSubscriptions();
      ResendSome();
      if (items[1].revents & ZMQ_POLLIN) AnswerQueries();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      spdlog::error("zmq server: socket thread: {}", e.what());
      std::this_thread::sleep_for(kPollInterval);  // a persistent error must not spin the CPU
    } catch (const std::exception& e) {
      spdlog::error("zmq server: socket thread: {}", e.what());
      std::this_thread::sleep_for(kPollInterval);
    }
  }
}

void ZmqServer::Impl::ForwardQueued() {
  std::vector<zmq::message_t> parts;
  for (int i = 0; i < kBatch; ++i) {
    if (!ReceiveNow(queue_out, &parts)) return;
    if (parts.size() != 2) continue;  // a one-part message only wakes the thread up
    // Counted first so that a subscriber holding the message never sees a smaller published().
    published.fetch_add(1);
    // XPUB never blocks: above a subscriber's high-water mark the message is dropped for it.
    zmq::send_multipart(xpub, parts, zmq::send_flags::dontwait);
  }
}

void ZmqServer::Impl::AnswerSubscriptions() {
  for (int i = 0; i < kBatch; ++i) {
    zmq::message_t message;
    if (!xpub.recv(message, zmq::recv_flags::dontwait)) return;
    if (message.size() == 0 || message.data<uint8_t>()[0] != kSubscribe) continue;
    std::string prefix(message.data<char>() + 1, message.size() - 1);
    if (resend_waiting.count(prefix) != 0) continue;
    if (resend_queue.size() >= kMaxWaitingResends || prefix.size() > kMaxResentPrefix) {
      if (LogThisOne(++resends_dropped)) {
        spdlog::warn(
            "zmq server: {} late-subscriber resends dropped (a prefix over {} bytes, or {} "
            "prefixes waiting already)",
            resends_dropped, kMaxResentPrefix, kMaxWaitingResends);
      }
      continue;
    }
    resend_waiting.insert(prefix);
    resend_queue.push_back(std::move(prefix));
  }
}

void ZmqServer::Impl::RememberLocked(const std::string& topic,
                                     std::shared_ptr<const std::string> bytes, uint64_t seq) {
  if (auto it = current.find(topic); it != current.end()) {
    table_bytes -= it->second.bytes->size();
    by_sequence.erase({it->second.sequence, topic});
  }
  table_bytes += bytes->size();
  current[topic] = Current{std::move(bytes), seq};
  by_sequence.emplace(seq, topic);
  while (table_bytes > table_budget && !by_sequence.empty()) {
    auto oldest = by_sequence.begin();
    auto it = current.find(oldest->second);
    table_bytes -= it->second.bytes->size();
    if (table_evicted++ == 0) {
      spdlog::warn(
          "zmq server: the current masks outgrew zmq.late_joiner_budget_mb ({} MiB): those "
          "published longest ago are no longer resent to late subscribers (the query socket "
          "still answers them from the store)",
          table_budget >> 20);
    }
    current.erase(it);
    by_sequence.erase(oldest);
  }
}

void ZmqServer::Impl::ResendSome() {
  size_t budget = kBatch;
  while (budget > 0) {
    if (!resend_prefix) {
      if (resend_queue.empty()) return;
      resend_prefix = std::move(resend_queue.front());
      resend_queue.pop_front();
      resend_waiting.erase(*resend_prefix);
      resend_after.reset();
    }
    const std::string& prefix = *resend_prefix;
    std::vector<std::pair<std::string, std::shared_ptr<const std::string>>> matches;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto it = resend_after ? current.upper_bound(*resend_after)
                                  : current.lower_bound(prefix);
           it != current.end() && matches.size() < budget &&
           it->first.compare(0, prefix.size(), prefix) == 0;
           ++it) {
        matches.emplace_back(it->first, it->second.bytes);
      }
    }
    // XPUB sends these to every subscriber whose prefix matches, so an earlier subscriber may see
    // a mask twice; the repeat carries the same sequence number.
    for (const auto& [topic, bytes] : matches) {
      std::array<zmq::message_t, 2> parts = {ToMessage(topic), ToMessage(*bytes)};
      zmq::send_multipart(xpub, parts, zmq::send_flags::dontwait);
    }
    if (matches.size() < budget) {
      resend_prefix.reset();  // every match sent
    } else {
      resend_after = matches.back().first;
    }
    budget -= matches.size();
  }
}

v1::QueryReply ZmqServer::AnswerRequest(const void* request, size_t size,
                                        const QueryHandler& handler) {
  v1::QueryReply reply;
  v1::Query query;
  if (size > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !query.ParseFromArray(request, static_cast<int>(size))) {
    reply.set_ok(false);
    reply.set_error("malformed Query: " + std::to_string(size) +
                    " bytes that do not parse as clickdiff.v1.Query");
    return reply;
  }
  if (!handler) {
    reply.set_ok(false);
    reply.set_error("the service is not answering queries (starting or stopping)");
    return reply;
  }
  Result<v1::QueryReply> answered =
      Guarded("query handler", [&]() -> Result<v1::QueryReply> { return handler(query); });
  if (answered.ok()) return std::move(answered).value();
  reply.set_ok(false);
  reply.set_error(answered.status().message());
  return reply;
}

v1::QueryReply ZmqServer::Impl::Answer(const zmq::message_t& request) {
  std::lock_guard<std::mutex> lock(handler_mu);
  return AnswerRequest(request.data(), request.size(), handler);
}

void ZmqServer::Impl::AnswerQueries() {
  std::vector<zmq::message_t> parts;
  for (int i = 0; i < kBatch; ++i) {
    if (!ReceiveNow(router, &parts)) return;
    // [identity, Query] from a plain DEALER, [identity, "", Query] from one that sends a REQ-style
    // empty delimiter; the reply mirrors the envelope so either kind of client can read it.
    const bool delimited = parts.size() == 3 && parts[1].size() == 0;
    v1::QueryReply reply;
    if (parts.size() == 2 || delimited) {
      reply = Answer(parts.back());
    } else {
      reply.set_ok(false);
      reply.set_error("malformed Query: expected [Query] or [empty delimiter, Query], got " +
                      std::to_string(parts.size() - 1) + " frames");
    }
    std::string bytes;
    if (!reply.SerializeToString(&bytes)) {
      spdlog::error("zmq server: cannot serialize a QueryReply; the client will time out");
      continue;
    }
    std::vector<zmq::message_t> out;
    out.push_back(std::move(parts[0]));
    if (delimited) out.emplace_back();
    out.push_back(ToMessage(bytes));
    // ROUTER drops a reply to a peer that is gone or above its high-water mark; never blocks.
    zmq::send_multipart(router, out, zmq::send_flags::dontwait);
  }
}

// ZAP (RFC 27): request [version "1.0", request id, domain, address, routing id, mechanism,
// credentials...], for CURVE one credential, the client's 32-byte public key; reply [version,
// request id, status code, status text, user id, metadata]. Allowed keys get 200, the rest 400.
void ZmqServer::Impl::AnswerHandshakes() {
  std::vector<zmq::message_t> request;
  for (int i = 0; i < kBatch; ++i) {
    if (!ReceiveNow(zap, &request)) return;
    const bool curve = request.size() == 7 && request[0].to_string_view() == "1.0" &&
                       request[5].to_string_view() == "CURVE" &&
                       request[6].size() == CurveKey().size();
    CurveKey key{};
    if (curve) std::copy_n(request[6].data<uint8_t>(), key.size(), key.begin());
    const bool allowed = curve && allowed_clients.count(key) != 0;
    if (!allowed) {
      if (LogThisOne(++refused_clients)) {
        std::array<char, 41> z85{};  // Z85: 40 characters and a terminating null
        if (curve) zmq_z85_encode(z85.data(), key.data(), key.size());
        spdlog::warn("zmq server: refused a client {} whose key {} is not allowed ({} so far)",
                     request.size() > 3 ? request[3].to_string() : std::string("?"),
                     curve ? std::string(z85.data()) : std::string("(none)"), refused_clients);
      }
    }
    std::array<zmq::message_t, 6> reply = {
        ToMessage("1.0"),
        request.size() > 1 ? std::move(request[1]) : zmq::message_t(),
        ToMessage(allowed ? "200" : "400"),
        ToMessage(allowed ? "OK" : "client key not allowed"),
        zmq::message_t(),
        zmq::message_t(),
    };
    zmq::send_multipart(zap, reply);
  }
}

void ZmqServer::Impl::Wake() {
  std::lock_guard<std::mutex> lock(mu);
  try {
    queue_in.send(zmq::message_t(), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    spdlog::warn("zmq server: cannot wake the socket thread: {}", e.what());
  }
}

Result<std::unique_ptr<ZmqServer>> ZmqServer::Bind(const ZmqConfig& config, QueryHandler handler) {
  auto impl = std::make_unique<Impl>(std::move(handler));
  CLICKDIFF_RETURN_IF_ERROR(impl->Open(config));
  try {
    impl->thread = std::thread([raw = impl.get()] { raw->Loop(); });
  } catch (const std::system_error& e) {
    return Internal(std::string("cannot start the ZeroMQ socket thread: ") + e.what());
  }
  spdlog::info("zmq server: publishing on {}, answering queries on {}{}", impl->publish_endpoint,
               impl->query_endpoint, config.curve.enabled ? " (CURVE)" : "");
  return std::unique_ptr<ZmqServer>(new ZmqServer(std::move(impl)));
}

ZmqServer::ZmqServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZmqServer::~ZmqServer() = default;

void ZmqServer::SetQueryHandler(QueryHandler handler) {
  std::lock_guard<std::mutex> lock(impl_->handler_mu);
  impl_->handler = std::move(handler);
}

const std::string& ZmqServer::publish_endpoint() const { return impl_->publish_endpoint; }

const std::string& ZmqServer::server_public_key() const { return impl_->server_public_key; }

const std::string& ZmqServer::query_endpoint() const { return impl_->query_endpoint; }

void ZmqServer::Remember(const v1::MaskResult& mask) {
  auto bytes = std::make_shared<std::string>();
  if (!mask.SerializeToString(bytes.get())) {
    spdlog::error("zmq server: cannot serialize the mask of {}/{}", mask.dataset(),
                  mask.image_id());
    return;
  }
  const std::string topic = MaskTopic(mask.dataset(), mask.image_id());
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto known = impl_->current.find(topic);
  if (known == impl_->current.end() || known->second.sequence <= mask.sequence()) {
    impl_->RememberLocked(topic, std::move(bytes), mask.sequence());
  }
  impl_->sequence = std::max(impl_->sequence, mask.sequence());
}

void ZmqServer::ContinueSequence(uint64_t after, SequenceReserve reserve) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->sequence = std::max(impl_->sequence, after);
  impl_->reserved = impl_->sequence;
  impl_->reserve = std::move(reserve);
}

uint64_t ZmqServer::Publish(v1::MaskResult mask) {
  std::string topic = MaskTopic(mask.dataset(), mask.image_id());
  Impl& s = *impl_;
  // One lock around numbering, remembering and queueing: with several publishing threads the
  // table keeps the highest sequence and the socket sends in sequence order.
  std::lock_guard<std::mutex> lock(s.mu);
  const uint64_t sequence = ++s.sequence;
  if (s.reserve && sequence > s.reserved) {
    const uint64_t upto = s.sequence + kSequenceBlock - 1;
    // Tried once per block: a failure is logged, not repeated for every mask.
    if (Status reserved = s.reserve(upto); !reserved.ok()) {
      spdlog::error(
          "zmq server: sequence numbers up to {} not persisted ({}); after a restart masks may "
          "be numbered below ones already sent",
          upto, reserved.ToString());
    }
    s.reserved = upto;
  }
  mask.set_sequence(sequence);
  auto bytes = std::make_shared<std::string>();
  if (!mask.SerializeToString(bytes.get())) {
    spdlog::error("zmq server: cannot serialize mask {} for {}; not published", sequence, topic);
    return sequence;
  }
  if (!mask.preview()) s.RememberLocked(topic, bytes, sequence);  // late subscribers get finals
  s.QueueLocked(topic, *bytes);
  return sequence;
}

void ZmqServer::PublishMetrics(const v1::Metrics& metrics) {
  std::string bytes;
  if (!metrics.SerializeToString(&bytes)) {
    spdlog::error("zmq server: cannot serialize metrics of {}; not published", metrics.dataset());
    return;
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->QueueLocked(MetricsTopic(metrics.dataset()), bytes);
}

void ZmqServer::Impl::QueueLocked(const std::string& topic, const std::string& bytes) {
  try {
    std::array<zmq::message_t, 2> parts = {ToMessage(topic), ToMessage(bytes)};
    if (!zmq::send_multipart(queue_in, parts, zmq::send_flags::dontwait)) {
      // Only when the socket thread has fallen kQueueHighWaterMark messages behind; late
      // subscribers still get a mask from the table. Logged sparsely: it comes in floods.
      if (queue_drops++ % 1000 == 0) {
        spdlog::warn("zmq server: publish queue full, {} messages not sent (latest {})",
                     queue_drops, topic);
      }
    }
  } catch (const zmq::error_t& e) {
    spdlog::error("zmq server: cannot queue a message for {}: {}", topic, e.what());
  }
}

uint64_t ZmqServer::published() const { return impl_->published.load(); }

}  // namespace clickdiff
