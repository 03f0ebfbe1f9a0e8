#include "io/embedded_broker.h"

// rdkafka_mock.h relies on declarations from rdkafka.h, so the order matters.
// clang-format off
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
// clang-format on

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

#include "io/kafka_conf.h"

namespace clickdiff {

using kafka_internal::ConfPtr;
using kafka_internal::HandlePtr;

namespace {

struct MockClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* cluster) const {
    rd_kafka_mock_cluster_destroy(cluster);
  }
};
using MockClusterPtr = std::unique_ptr<rd_kafka_mock_cluster_t, MockClusterDeleter>;

}  // namespace

struct EmbeddedBroker::Impl {
  // Declaration order is destruction order reversed: the cluster must go before the handle that
  // runs it.
  HandlePtr handle;
  MockClusterPtr cluster;
  std::string bootstrap_servers;
  int brokers = 0;
};

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(int brokers) {
  if (brokers < 1) {
    return InvalidArgument("embedded broker: brokers must be at least 1, got " +
                           std::to_string(brokers));
  }
  auto impl = std::make_unique<Impl>();
  // The mock cluster needs a handle of its own to run on; it never connects anywhere, so it gets
  // no bootstrap servers.
  ConfPtr conf = kafka_internal::NewLoggingConf();
  CLICKDIFF_RETURN_IF_ERROR(
      kafka_internal::SetProperty(conf.get(), "client.id", "clickdiff-embedded-broker"));
  // Warnings and up only: at notice level the handle says it has no bootstrap.servers, which is
  // true and meaningless here.
  CLICKDIFF_RETURN_IF_ERROR(kafka_internal::SetProperty(conf.get(), "log_level", "4"));
  Result<HandlePtr> handle = kafka_internal::NewHandle(RD_KAFKA_PRODUCER, std::move(conf));
  if (!handle.ok()) return handle.status().WithContext("embedded broker: creating its handle");
  impl->handle = std::move(handle).value();
  impl->cluster.reset(rd_kafka_mock_cluster_new(impl->handle.get(), brokers));
  if (impl->cluster == nullptr) {
    return Unavailable("embedded broker: could not start a mock cluster of " +
                       std::to_string(brokers) + " broker(s) on 127.0.0.1");
  }
  impl->bootstrap_servers = rd_kafka_mock_cluster_bootstraps(impl->cluster.get());
  impl->brokers = brokers;
  return std::unique_ptr<EmbeddedBroker>(new EmbeddedBroker(std::move(impl)));
}

EmbeddedBroker::EmbeddedBroker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EmbeddedBroker::~EmbeddedBroker() = default;

const std::string& EmbeddedBroker::bootstrap_servers() const { return impl_->bootstrap_servers; }

Status EmbeddedBroker::CreateTopic(const std::string& topic, int partitions) {
  if (topic.empty()) return InvalidArgument("embedded broker: topic name is empty");
  if (partitions < 1) {
    return InvalidArgument("embedded broker: topic " + topic +
                           ": partitions must be at least 1, got " + std::to_string(partitions));
  }
  const rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(impl_->cluster.get(), topic.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return Internal("embedded broker: creating topic " + topic + ": " + rd_kafka_err2str(err));
  }
  return Status::Ok();
}

int EmbeddedBroker::brokers() const { return impl_->brokers; }

Status EmbeddedBroker::ForEachBroker(int broker, const char* what,
                                     const std::function<int(int32_t)>& apply) {
  if (broker < 0 || broker > impl_->brokers) {
    return InvalidArgument("embedded broker: no broker " + std::to_string(broker) + " (ids 1.." +
                           std::to_string(impl_->brokers) + ", 0: every broker)");
  }
  const int first = broker == 0 ? 1 : broker;
  const int last = broker == 0 ? impl_->brokers : broker;
  for (int id = first; id <= last; ++id) {
    const auto err = static_cast<rd_kafka_resp_err_t>(apply(id));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Internal(std::string("embedded broker: ") + what + " broker " + std::to_string(id) +
                      ": " + rd_kafka_err2str(err));
    }
  }
  return Status::Ok();
}

Status EmbeddedBroker::SetDown(int broker, bool down) {
  rd_kafka_mock_cluster_t* cluster = impl_->cluster.get();
  return ForEachBroker(broker, down ? "setting down" : "setting up", [&](int32_t id) {
    return down ? rd_kafka_mock_broker_set_down(cluster, id)
                : rd_kafka_mock_broker_set_up(cluster, id);
  });
}

Status EmbeddedBroker::SetRoundTrip(int broker, int rtt_ms) {
  rd_kafka_mock_cluster_t* cluster = impl_->cluster.get();
  return ForEachBroker(broker, "slowing", [&](int32_t id) {
    return rd_kafka_mock_broker_set_rtt(cluster, id, std::max(rtt_ms, 0));
  });
}

void EmbeddedBroker::PushRequestErrors(int16_t api_key, int error, int count) {
  const std::vector<rd_kafka_resp_err_t> errors(static_cast<size_t>(std::max(count, 0)),
                                                static_cast<rd_kafka_resp_err_t>(error));
  rd_kafka_mock_push_request_errors_array(impl_->cluster.get(), api_key, errors.size(),
                                          errors.data());
}

void EmbeddedBroker::RefuseProduces(int count) {
  constexpr int16_t kProduceApiKey = 0;  // the Kafka protocol's Produce request
  PushRequestErrors(kProduceApiKey, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, count);
}

}  // namespace clickdiff
