// tests/graph/service_fixture.h — runs clickdiffd in-process (a Service object) against a
// real embedded Kafka broker that outlives it, a RocksDB in a fresh directory and ZeroMQ on
// loopback, with a tiny untrained model so sampling takes milliseconds.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

#include "io/embedded_broker.h"
#include "io/kafka_consumer.h"
#include "io/kafka_producer.h"
#include "io/store.h"
#include "io/zmq_client.h"
#include "services/service.h"

namespace clickdiff::testutil {

inline Config SmallServiceConfig(const std::string& dir, const std::string& bootstrap) {
  Config c;
  c.mode = Mode::kExternal;  // the test's broker outlives service restarts
  c.kafka.bootstrap_servers = bootstrap;
  c.kafka.group_id = "clickdiff-test";
  c.kafka.properties["session.timeout.ms"] = "6000";
  c.kafka.properties["heartbeat.interval.ms"] = "500";
  c.kafka.properties["fetch.wait.max.ms"] = "50";
  c.store.path = dir + "/db";
  c.model.resolution = 32;
  c.model.levels = 2;
  c.model.base_channels = 8;
  c.model.encoder_channels = 8;
  c.model.d3pm.steps = 20;
  c.sampler.samples = 4;
  c.sampler.steps = 2;
  c.sampler.preview_samples = 2;  // a click's first answer: told apart from the final by N
  c.sampler.preview_steps = 1;
  c.compute.torch_threads = 1;
  c.limits.max_in_flight = 8;
  c.limits.pending_click_timeout_ms = 10'000;
  c.trainer.continuous = false;  // a fixed model; the continuous-learning tests turn it on
  return c;
}

// One service, started in the constructor (a failure to start is a test failure); Stop() stops
// it like SIGTERM does and returns its Status.
class InProcessService {
 public:
  explicit InProcessService(const Config& config) {
    Result<std::unique_ptr<Service>> started = Service::Start(config);
    if (!started.ok()) {
      ADD_FAILURE() << "service failed to start: " << started.status().ToString();
      return;
    }
    service_ = std::move(started).value();
    endpoints_ = service_->endpoints();
  }
  ~InProcessService() { (void)Stop(); }
  Status Stop() { return service_ ? service_->Stop() : Internal("the service did not start"); }
  const ServiceEndpoints& endpoints() const { return endpoints_; }

 private:
  std::unique_ptr<Service> service_;
  ServiceEndpoints endpoints_;
};

// Waits up to `timeout` for `done()`.
template <typename F>
bool Eventually(F done, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// Reads `topics` from the beginning with an ordinary consumer of group `group` until `done` holds
// for the records read so far (or a minute passed).
template <typename Done>
std::vector<KafkaMessage> ReadTopicsUntil(const KafkaConfig& kafka, const std::string& bootstrap,
                                          const std::vector<std::string>& topics, Done done,
                                          const std::string& group) {
  std::mutex mu;
  std::vector<KafkaMessage> read;
  KafkaConsumer::Callbacks callbacks;
  callbacks.stored_offset = [](const std::string&, int32_t) {
    return Result<std::optional<int64_t>>(std::optional<int64_t>());
  };
  callbacks.on_message = [&](KafkaMessage m) {
    std::lock_guard<std::mutex> lock(mu);
    read.push_back(std::move(m));
  };
  KafkaConfig reader = kafka;
  reader.group_id = group;
  reader.instance_id = "";
  auto consumer = KafkaConsumer::Create(reader, topics, callbacks, bootstrap).value();
  EXPECT_TRUE(consumer->Start().ok());
  EXPECT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return done(read);
  }));
  consumer->Stop();
  return read;
}

// The same until `at_least` records came.
inline std::vector<KafkaMessage> ReadTopics(const KafkaConfig& kafka, const std::string& bootstrap,
                                            const std::vector<std::string>& topics, size_t at_least,
                                            const std::string& group) {
  return ReadTopicsUntil(
      kafka, bootstrap, topics,
      [at_least](const std::vector<KafkaMessage>& read) { return read.size() >= at_least; }, group);
}

inline std::string FreshDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("clickdiff_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace clickdiff::testutil
