// io/embedded_broker.h — librdkafka's mock cluster as the embedded Kafka-protocol broker.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace clickdiff {

// A Kafka-protocol broker cluster inside this process (rdkafka_mock.h), listening on 127.0.0.1 at
// ports the OS picks. Real clients (librdkafka, kcat) talk to it over TCP. Not thread-safe to
// construct; the broker itself serves from librdkafka's threads. Data lives in memory only.
// Mock quirks (librdkafka 2.0): the first JoinGroup of an empty group waits ~3 s (like
// group.initial.rebalance.delay.ms), a rejoin after members left waits session.timeout.ms - 1 s;
// topics a producer names are auto-created with 4 partitions unless created here first.
class EmbeddedBroker {
 public:
  // `brokers` >= 1 (InvalidArgument otherwise).
  static Result<std::unique_ptr<EmbeddedBroker>> Start(int brokers);
  ~EmbeddedBroker();  // stops the brokers; clients still connected see them go down
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // "127.0.0.1:PORT[,127.0.0.1:PORT...]"
  const std::string& bootstrap_servers() const;
  // Creates `topic` with `partitions` partitions (replication 1); an existing topic is OK.
  Status CreateTopic(const std::string& topic, int partitions);
  int brokers() const;  // their ids are 1..brokers()

  // Fault injection (io/broker_faults.h runs these on a schedule). `broker`: an id, or 0 for every
  // broker; kInvalidArgument outside 0..brokers().
  // Down: the broker drops its connections and refuses new ones until it is set up again; what it
  // holds stays. Partitions it leads are unavailable meanwhile (the mock moves no leaders).
  Status SetDown(int broker, bool down);
  // Each request to the broker is answered `rtt_ms` later (0: at once again).
  Status SetRoundTrip(int broker, int rtt_ms);
  // The next `count` requests with Kafka protocol API key `api_key`, to any broker, are answered
  // with `error` (an rd_kafka_resp_err_t broker error).
  void PushRequestErrors(int16_t api_key, int error, int count);
  // The next `count` produce requests (any topic) are refused with TOPIC_AUTHORIZATION_FAILED,
  // which producers do not retry, as a broker refusing a topic does.
  void RefuseProduces(int count);

 private:
  struct Impl;
  explicit EmbeddedBroker(std::unique_ptr<Impl> impl);
  // Calls `apply` (returning an rd_kafka_resp_err_t) with `broker`'s id, or each id for 0.
  Status ForEachBroker(int broker, const char* what, const std::function<int(int32_t)>& apply);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
