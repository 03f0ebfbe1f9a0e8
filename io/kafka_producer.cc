#include "io/kafka_producer.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <utility>

#include "base/guard.h"
#include "io/kafka_conf.h"

namespace clickdiff {

using kafka_internal::ConfPtr;
using kafka_internal::HandlePtr;

namespace {

constexpr int kPollTimeoutMs = 100;
constexpr std::chrono::milliseconds kDestructorFlushTimeout(10000);
constexpr int kPurgeServeTimeoutMs = 1000;  // serving the delivery reports of purged records

}  // namespace

struct KafkaProducer::Impl {
  ~Impl() {
    if (handle == nullptr) return;
    const rd_kafka_resp_err_t err = rd_kafka_flush(handle.get(), kDestructorFlushTimeout.count());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("kafka producer: {} record(s) not delivered after {} ms at shutdown ({})",
                    rd_kafka_outq_len(handle.get()), kDestructorFlushTimeout.count(),
                    rd_kafka_err2str(err));
      // What is left is reported (as purged) to its delivery callback, here, before the handle
      // goes: every callback runs once.
      rd_kafka_purge(handle.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      (void)rd_kafka_flush(handle.get(), kPurgeServeTimeoutMs);
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!first_error.ok()) {
        spdlog::error("kafka producer: a delivery failure no Flush reported: {}",
                      first_error.ToString());
      }
    }
    stop.store(true);
    if (poller.joinable()) poller.join();
    // Destroy the handle while the members its callbacks touch are still alive.
    handle.reset();
  }

  // Serves delivery reports and error callbacks until Stop; Flush serves them too, concurrently,
  // which librdkafka allows.
  void PollLoop() {
    while (!stop.load()) rd_kafka_poll(handle.get(), kPollTimeoutMs);
  }

  // Delivery-report callback, on whichever thread is inside rd_kafka_poll/rd_kafka_flush.
  static void OnDelivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* message, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    // The record's own callback (Produce with a DeliveryCallback), owned from here on.
    std::unique_ptr<DeliveryCallback> callback(static_cast<DeliveryCallback*>(message->_private));
    // No exception may unwind through librdkafka's C code.
    auto tell = [&callback](const Status& delivery, const Landed& at) {
      if (!callback) return;
      Status told = Guarded("kafka producer: delivery callback", [&] {
        (*callback)(delivery, at);
        return Status::Ok();
      });
      if (!told.ok()) spdlog::error("{}", told.ToString());
    };
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->delivered.fetch_add(1);
      tell(Status::Ok(), Landed{message->partition, message->offset});
      return;
    }
    self->failed.fetch_add(1);
    Status failure = Unavailable("kafka producer: delivery to topic " +
                                 std::string(rd_kafka_topic_name(message->rkt)) +
                                 " failed: " + rd_kafka_err2str(message->err));
    {
      std::lock_guard<std::mutex> lock(self->mu);
      if (self->first_error.ok()) self->first_error = failure;
    }
    tell(failure, Landed{});
  }

  // Client-level errors (brokers down, authentication, fatal idempotence errors). Fatal ones are
  // also returned by the next Produce/Flush; here they are only logged.
  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* /*opaque*/) {
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      spdlog::error("kafka producer: {}", kafka_internal::FatalErrorMessage(rk));
    } else {
      spdlog::warn("kafka producer: {}: {}",
                   rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), reason);
    }
  }

  Status FatalStatus() {
    if (rd_kafka_fatal_error(handle.get(), nullptr, 0) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Status::Ok();
    }
    return Internal("kafka producer: fatal error, the producer must be recreated: " +
                    kafka_internal::FatalErrorMessage(handle.get()));
  }

  HandlePtr handle;
  std::thread poller;  // runs PollLoop; joined in the destructor
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> failed{0};
  KafkaConfig config;  // what it was created with (NewReader)
  std::string bootstrap_override;
  std::mutex mu;
  Status first_error;  // GUARDED_BY(mu); the first delivery failure since the last Flush
};

Result<std::unique_ptr<KafkaProducer>> KafkaProducer::Create(
    const KafkaConfig& config, const std::string& bootstrap_override) {
  kafka_internal::ConfSpec spec;
  spec.client_kind = "producer";
  spec.managed = {{"enable.idempotence", "true"}, {"acks", "all"}};
  Result<ConfPtr> conf = kafka_internal::BuildConf(config, bootstrap_override, spec);
  if (!conf.ok()) return conf.status();

  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->bootstrap_override = bootstrap_override;
  rd_kafka_conf_set_opaque(conf->get(), impl.get());
  rd_kafka_conf_set_dr_msg_cb(conf->get(), &Impl::OnDelivery);
  rd_kafka_conf_set_error_cb(conf->get(), &Impl::OnError);
  Result<HandlePtr> handle = kafka_internal::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!handle.ok()) return handle.status().WithContext("kafka producer");
  impl->handle = std::move(handle).value();
  impl->poller = std::thread([raw = impl.get()] { raw->PollLoop(); });
  return std::unique_ptr<KafkaProducer>(new KafkaProducer(std::move(impl)));
}

KafkaProducer::KafkaProducer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaProducer::~KafkaProducer() = default;

Status KafkaProducer::Produce(const std::string& topic, const std::string& key,
                              const std::string& value) {
  return Produce(topic, key, value, nullptr);
}

Status KafkaProducer::Produce(const std::string& topic, const std::string& key,
                              const std::string& value, DeliveryCallback on_delivery) {
  CLICKDIFF_RETURN_IF_ERROR(impl_->FatalStatus());
  // The callback travels with the record (its opaque) and is freed by OnDelivery; here if the
  // record was not queued.
  std::unique_ptr<DeliveryCallback> callback =
      on_delivery ? std::make_unique<DeliveryCallback>(std::move(on_delivery)) : nullptr;
  // An empty key is sent as a null key, so such records are spread by the partitioner rather
  // than all hashed to one partition. The value is copied (F_COPY): the caller's strings may go.
  const rd_kafka_resp_err_t err = rd_kafka_producev(
      impl_->handle.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
      RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(callback.get()), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) (void)callback.release();  // OnDelivery owns it now
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return Status::Ok();
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return ResourceExhausted(
          "kafka producer: local queue full (queue.buffering.max.messages/kbytes) producing to "
          "topic " +
          topic + "; flush and retry");
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
      return InvalidArgument("kafka producer: record for topic " + topic + " is " +
                             std::to_string(key.size() + value.size()) +
                             " bytes, over message.max.bytes");
    case RD_KAFKA_RESP_ERR__FATAL:
      return impl_->FatalStatus();
    default:
      return Unavailable("kafka producer: producing to topic " + topic + ": " +
                         rd_kafka_err2str(err));
  }
}

Status KafkaProducer::Flush(std::chrono::milliseconds timeout) {
  const rd_kafka_resp_err_t err =
      rd_kafka_flush(impl_->handle.get(), static_cast<int>(timeout.count()));
  CLICKDIFF_RETURN_IF_ERROR(impl_->FatalStatus());
  Status first_error;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::swap(first_error, impl_->first_error);
  }
  CLICKDIFF_RETURN_IF_ERROR(first_error);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable("kafka producer: flush timed out after " + std::to_string(timeout.count()) +
                       " ms with " + std::to_string(rd_kafka_outq_len(impl_->handle.get())) +
                       " record(s) not yet delivered");
  }
  return Status::Ok();
}

Result<std::unique_ptr<KafkaReader>> KafkaProducer::NewReader() const {
  return KafkaReader::Create(impl_->config, impl_->bootstrap_override);
}

uint64_t KafkaProducer::delivered() const { return impl_->delivered.load(); }

uint64_t KafkaProducer::failed() const { return impl_->failed.load(); }

}  // namespace clickdiff
