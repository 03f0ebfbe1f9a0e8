#include "io/zmq_client.h"

#include <spdlog/spdlog.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "io/curve_key.h"

namespace clickdiff {
namespace {

// A CURVE client's keys: the server's public key and a key pair made for this client.
struct ClientCurve {
  CurveKey server_public;
  CurveKey public_key;
  CurveKey secret_key;
};

// Nullopt when `options` asks for no encryption.
Result<std::optional<ClientCurve>> MakeClientCurve(const ZmqClientOptions& options) {
  if (options.server_public_key.empty()) return std::optional<ClientCurve>();
  if (zmq_has("curve") == 0) {
    return Unavailable("server_public_key: this libzmq was built without CURVE (libsodium)");
  }
  ClientCurve curve;
  Result<CurveKey> server = DecodeCurveKey(options.server_public_key, "server_public_key");
  if (!server.ok()) return server.status();
  curve.server_public = *server;
  CurveKeyPair own{options.client_public_key, options.client_secret_key};
  if (own.public_key.empty() && own.secret_key.empty()) {
    Result<CurveKeyPair> fresh = NewCurveKeyPair();
    if (!fresh.ok()) return fresh.status();
    own = std::move(fresh).value();
  }
  CLICKDIFF_RETURN_IF_ERROR(CheckCurveKeyPair(own, "client key pair"));
  curve.public_key = *DecodeCurveKey(own.public_key, "client public key");
  curve.secret_key = *DecodeCurveKey(own.secret_key, "client secret key");
  return std::optional<ClientCurve>(curve);
}

zmq::const_buffer KeyBuffer(const CurveKey& key) {
  return zmq::const_buffer(key.data(), key.size());
}

// Creates a socket of `type` (linger 0, CURVE client when `curve` is set) connected to `endpoint`.
Result<zmq::socket_t> OpenConnected(zmq::context_t& context, zmq::socket_type type,
                                    const std::string& endpoint,
                                    const std::optional<ClientCurve>& curve) {
  try {
    zmq::socket_t socket(context, type);
    socket.set(zmq::sockopt::linger, 0);
    if (curve) {
      socket.set(zmq::sockopt::curve_serverkey, KeyBuffer(curve->server_public));
      socket.set(zmq::sockopt::curve_publickey, KeyBuffer(curve->public_key));
      socket.set(zmq::sockopt::curve_secretkey, KeyBuffer(curve->secret_key));
    }
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      return InvalidArgument("cannot connect to " + endpoint + ": " + e.what());
    }
    return socket;
  } catch (const zmq::error_t& e) {
    return Internal("creating a ZeroMQ socket for " + endpoint + ": " + e.what());
  }
}

// Waits up to `timeout` (negative counts as zero) for input on `socket`. False on timeout or
// when a signal interrupted the wait.
bool WaitForInput(zmq::socket_t& socket, std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  try {
    return zmq::poll(&item, 1, std::max(timeout, std::chrono::milliseconds(0))) > 0;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;
    throw;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// MaskSubscriber

struct MaskSubscriber::Impl {
  zmq::context_t context;  // declared before the socket: closed after it
  zmq::socket_t socket;
};

Result<std::unique_ptr<MaskSubscriber>> MaskSubscriber::Connect(const std::string& endpoint,
                                                                const std::string& prefix,
                                                                const ZmqClientOptions& options) {
  Result<std::optional<ClientCurve>> curve = MakeClientCurve(options);
  if (!curve.ok()) return curve.status();
  auto impl = std::make_unique<Impl>();
  Result<zmq::socket_t> socket =
      OpenConnected(impl->context, zmq::socket_type::sub, endpoint, *curve);
  if (!socket.ok()) return socket.status();
  impl->socket = std::move(*socket);
  try {
    impl->socket.set(zmq::sockopt::subscribe, prefix);
  } catch (const zmq::error_t& e) {
    return Internal("subscribing to \"" + prefix + "\" at " + endpoint + ": " + e.what());
  }
  return std::unique_ptr<MaskSubscriber>(new MaskSubscriber(std::move(impl)));
}

MaskSubscriber::MaskSubscriber(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MaskSubscriber::~MaskSubscriber() = default;

Result<std::optional<v1::MaskResult>> MaskSubscriber::Receive(std::chrono::milliseconds timeout) {
  std::vector<zmq::message_t> parts;
  try {
    if (!WaitForInput(impl_->socket, timeout)) return std::optional<v1::MaskResult>();
    if (!zmq::recv_multipart(impl_->socket, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      return std::optional<v1::MaskResult>();
    }
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("receiving a mask: ") + e.what());
  }
  const std::string topic = parts[0].to_string();
  if (parts.size() != 2) {
    return InvalidArgument("mask message on topic \"" + topic +
                           "\": expected 2 frames [topic, MaskResult], got " +
                           std::to_string(parts.size()));
  }
  v1::MaskResult mask;
  if (!mask.ParseFromArray(parts[1].data(), static_cast<int>(parts[1].size()))) {
    return InvalidArgument("mask message on topic \"" + topic +
                           "\": " + std::to_string(parts[1].size()) +
                           " bytes that do not parse as clickdiff.v1.MaskResult");
  }
  return std::optional<v1::MaskResult>(std::move(mask));
}

// ---------------------------------------------------------------------------------------------
// QueryClient

struct QueryClient::Impl {
  // Replaces the socket with a new one (a new identity to the ROUTER), so a reply that arrives
  // after its Ask timed out goes to a peer that no longer exists and is dropped by the server.
  Status Reopen() {
    socket = zmq::socket_t();  // close the old one first (linger 0)
    Result<zmq::socket_t> fresh = OpenConnected(context, zmq::socket_type::dealer, endpoint, curve);
    if (!fresh.ok()) return fresh.status();
    socket = std::move(*fresh);
    return Status::Ok();
  }

  zmq::context_t context;  // declared before the socket: closed after it
  std::string endpoint;
  std::optional<ClientCurve> curve;
  zmq::socket_t socket;  // closed (invalid) only if Reopen failed; Ask retries it
};

Result<std::unique_ptr<QueryClient>> QueryClient::Connect(const std::string& endpoint,
                                                          const ZmqClientOptions& options) {
  Result<std::optional<ClientCurve>> curve = MakeClientCurve(options);
  if (!curve.ok()) return curve.status();
  auto impl = std::make_unique<Impl>();
  impl->endpoint = endpoint;
  impl->curve = *curve;
  CLICKDIFF_RETURN_IF_ERROR(impl->Reopen());
  return std::unique_ptr<QueryClient>(new QueryClient(std::move(impl)));
}

QueryClient::QueryClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

QueryClient::~QueryClient() = default;

Result<v1::QueryReply> QueryClient::Ask(const v1::Query& query, std::chrono::milliseconds timeout) {
  Impl& c = *impl_;
  std::string request;
  if (!query.SerializeToString(&request)) return Internal("cannot serialize the Query");
  if (!c.socket) CLICKDIFF_RETURN_IF_ERROR(c.Reopen());
  std::vector<zmq::message_t> parts;
  try {
    // [empty delimiter, Query]: the ROUTER answers [empty delimiter, QueryReply], the same
    // envelope a REQ socket would use.
    std::array<zmq::message_t, 2> out = {zmq::message_t(),
                                         zmq::message_t(request.data(), request.size())};
    if (!zmq::send_multipart(c.socket, out, zmq::send_flags::dontwait)) {
      return Unavailable("cannot queue a query to " + c.endpoint + ": send queue full");
    }
    if (!WaitForInput(c.socket, timeout) ||
        !zmq::recv_multipart(c.socket, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      Status reopened = c.Reopen();
      if (!reopened.ok()) return reopened.WithContext("after a query to " + c.endpoint);
      return Unavailable("no reply from " + c.endpoint + " within " +
                         std::to_string(timeout.count()) + " ms" +
                         (c.curve ? " (CURVE: is this client's public key on the server's "
                                    "allow-list, zmq.curve.client_keys or client_keys_dir?)"
                                  : ""));
    }
  } catch (const zmq::error_t& e) {
    // A reply may still come: a fresh socket keeps it from being read as the next query's.
    Status reopened = c.Reopen();
    if (!reopened.ok()) spdlog::warn("query client: {}", reopened.ToString());
    return Unavailable("query to " + c.endpoint + ": " + e.what());
  }
  if (parts.size() != 2 || parts[0].size() != 0) {
    return InvalidArgument("reply from " + c.endpoint +
                           ": expected [empty delimiter, QueryReply], got " +
                           std::to_string(parts.size()) + " frames");
  }
  v1::QueryReply reply;
  if (!reply.ParseFromArray(parts[1].data(), static_cast<int>(parts[1].size()))) {
    return InvalidArgument("reply from " + c.endpoint + ": " + std::to_string(parts[1].size()) +
                           " bytes that do not parse as clickdiff.v1.QueryReply");
  }
  return reply;
}

}  // namespace clickdiff
