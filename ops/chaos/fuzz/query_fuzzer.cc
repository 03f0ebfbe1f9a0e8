// Fuzz target: a request on the ZeroMQ query socket (io/zmq_server.h AnswerRequest), the bytes any
// peer may send: parsed as a Query, answered by a handler that reads every field as the service's
// does (and fails on some, as a lookup of a missing image does), the reply serialised as sent.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "io/zmq_server.h"

namespace {

clickdiff::v1::QueryReply Echo(const clickdiff::v1::Query& query) {
  clickdiff::v1::QueryReply reply;
  if (query.kind() == clickdiff::v1::Query::KIND_IMAGE && query.image_id().empty()) {
    throw std::runtime_error("no image " + query.dataset() + "/" + query.image_id());
  }
  reply.set_ok(true);
  reply.set_error(query.dataset() + "/" + query.image_id());
  return reply;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const clickdiff::ZmqServer::QueryHandler& handler :
       {clickdiff::ZmqServer::QueryHandler(Echo), clickdiff::ZmqServer::QueryHandler()}) {
    const clickdiff::v1::QueryReply reply =
        clickdiff::ZmqServer::AnswerRequest(data, size, handler);
    std::string bytes;
    if (!reply.SerializeToString(&bytes)) return 0;
  }
  return 0;
}
