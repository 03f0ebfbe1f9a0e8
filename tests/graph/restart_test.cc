// clickdiffd as a process: stopped with SIGTERM and killed with SIGKILL while events stream in,
// then restarted; at the end every produced image and click is in RocksDB exactly once, the stored
// offsets match the topics' ends, and every image has a mask.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <thread>

#include "io/keys.h"
#include "tests/graph/service_fixture.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

using testutil::Click;
using testutil::Eventually;
using testutil::FreshDir;
using testutil::PngImageEvent;

// A child process with stdout+stderr going to `log`.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& log) {
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> args;
      for (std::string& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }
  void Signal(int signal) { kill(pid_, signal); }
  // Exit status as waitpid reports it.
  int Wait() {
    int status = 0;
    if (pid_ > 0) waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(RestartTest, StopAndKillMidStreamLoseNothingAndApplyNothingTwice) {
  const std::string dir = FreshDir("restart");
  const std::string bin = CLICKDIFF_BINARY_DIR;
  const std::string broker_log = dir + "/broker.log";
  Child broker({bin + "/services/clickdiff", "broker"}, broker_log);
  std::smatch match;
  std::string bootstrap;
  ASSERT_TRUE(Eventually(
      [&] {
        std::string log = ReadFile(broker_log);
        if (!std::regex_search(log, match,
                               std::regex(R"(^(127\.0\.0\.1:\d+)\s*$)", std::regex::multiline))) {
          return false;
        }
        bootstrap = match[1];
        return true;
      },
      std::chrono::seconds(20)))
      << ReadFile(broker_log);

  Config config = testutil::SmallServiceConfig(dir, bootstrap);
  const std::string config_path = dir + "/clickdiffd.yaml";
  {
    std::ofstream out(config_path);
    out << "mode: external\nkafka:\n  bootstrap_servers: \"" << bootstrap
        << "\"\n  group_id: restart-test\n"
        << "store:\n  path: " << config.store.path << "\n"
        << "model:\n  resolution: 32\n  levels: 2\n  base_channels: 8\n  encoder_channels: 8\n"
        << "  d3pm:\n    steps: 20\n"
        << "sampler:\n  samples: 4\n  steps: 2\n"
        << "compute:\n  torch_threads: 1\n"
        << "limits:\n  max_in_flight: 8\n";
  }

  constexpr int kImages = 60;
  constexpr int kClicksPerImage = 2;
  std::atomic<bool> produced{false};
  std::atomic<bool> abandon{false};
  // The stream comes in six chunks, each released at a point of the runs below, so that the stop
  // and the kill land while the service is applying events and more are still to come, however
  // slow the machine: one chunk per run while it runs, one while it is down.
  constexpr int kChunk = kImages / 6;
  std::atomic<int> released{0};  // chunks the producer may send
  std::thread producer_thread([&] {
    auto producer = KafkaProducer::Create(config.kafka, bootstrap).value();
    for (int i = 0; i < kImages && !abandon.load(); ++i) {
      while (i >= released.load() * kChunk && !abandon.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (abandon.load()) break;
      std::string id = "img" + std::to_string(i);
      ASSERT_TRUE(producer->Produce("images", id, PngImageEvent(id).SerializeAsString()).ok());
      for (int k = 0; k < kClicksPerImage; ++k) {
        v1::ClickEvent click = Click(id, id + "-c" + std::to_string(k), 2 + k, 3);
        ASSERT_TRUE(producer->Produce("clicks", id, click.SerializeAsString()).ok());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(150));  // 1.5 s a chunk
    }
    ASSERT_TRUE(producer->Flush(std::chrono::seconds(30)).ok());
    produced.store(true);
  });

  // Joins the producer on every way out of the test (a failed ASSERT returns early).
  struct JoinOnExit {
    std::thread& thread;
    std::atomic<bool>& abandon;
    ~JoinOnExit() {
      abandon.store(true);
      if (thread.joinable()) thread.join();
    }
  } join_on_exit{producer_thread, abandon};
  const std::string daemon_log = dir + "/clickdiffd.log";
  auto start = [&] {
    return std::make_unique<Child>(
        std::vector<std::string>{bin + "/services/clickdiffd", "--config", config_path},
        daemon_log);
  };
  auto ready_count = [&] {
    std::string log = ReadFile(daemon_log);
    size_t n = 0;
    for (size_t p = log.find("clickdiffd ready"); p != std::string::npos;
         p = log.find("clickdiffd ready", p + 1)) {
      ++n;
    }
    return n;
  };

  // Images the running service has stored (its status over the query socket), -1 when it does
  // not answer.
  auto stored_images = [&]() -> int64_t {
    Result<ServiceEndpoints> endpoints = ReadRuntimeFile(config);
    if (!endpoints.ok()) return -1;
    Result<std::unique_ptr<QueryClient>> client = QueryClient::Connect(endpoints->query_endpoint);
    if (!client.ok()) return -1;
    v1::Query query;
    query.set_kind(v1::Query::KIND_STATUS);
    Result<v1::QueryReply> reply = (*client)->Ask(query, std::chrono::seconds(5));
    return reply.ok() ? static_cast<int64_t>(reply->status().images()) : -1;
  };

  // Run 1: stopped cleanly once it has applied part of its chunk.
  auto service = start();
  ASSERT_TRUE(Eventually([&] { return ready_count() == 1; })) << ReadFile(daemon_log);
  released.store(1);
  ASSERT_TRUE(Eventually([&] { return stored_images() >= 3; })) << ReadFile(daemon_log);
  service->Signal(SIGTERM);
  int status = service->Wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(daemon_log);
  released.store(2);  // produced while no service runs

  // Run 2: killed once it has applied part of its chunk.
  service = start();
  ASSERT_TRUE(Eventually([&] { return ready_count() == 2; })) << ReadFile(daemon_log);
  released.store(3);
  ASSERT_TRUE(Eventually([&] { return stored_images() >= 2 * kChunk + 3; }))
      << ReadFile(daemon_log);
  service->Signal(SIGKILL);
  service->Wait();
  released.store(4);

  // Run 3: to the end of the stream. The killed instance never left the group: the restart waits
  // for the broker to let its partitions go (the consumer's 10 s session timeout where the broker,
  // as this mock one, ignores instance ids), then reads the chunk produced while it was down.
  const auto restarted = std::chrono::steady_clock::now();
  service = start();
  ASSERT_TRUE(Eventually([&] { return ready_count() == 3; })) << ReadFile(daemon_log);
  ASSERT_TRUE(Eventually([&] { return stored_images() > 3 * kChunk; }, std::chrono::seconds(60)))
      << ReadFile(daemon_log);
  const double resumed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count();
  std::printf("restart after kill -9: consuming again %.1f s after the start\n", resumed_s);
  RecordProperty("resumed_after_kill_s", std::to_string(resumed_s));
  released.store(6);
  producer_thread.join();
  ASSERT_TRUE(produced.load());
  auto endpoints = ReadRuntimeFile(config).value();
  auto client = QueryClient::Connect(endpoints.query_endpoint).value();
  v1::Query query;
  query.set_kind(v1::Query::KIND_STATUS);
  ASSERT_TRUE(Eventually(
      [&] {
        auto reply = client->Ask(query, std::chrono::seconds(5));
        return reply.ok() && reply->status().images() == kImages &&
               reply->status().clicks() == kImages * kClicksPerImage;
      },
      std::chrono::seconds(90)))
      << ReadFile(daemon_log);
  // Masks: every image gets one for its final click revision (those dropped by the stop and
  // lost in the kill are redrawn at start).
  ASSERT_TRUE(Eventually(
      [&] {
        for (int i = 0; i < kImages; ++i) {
          v1::Query mask;
          mask.set_kind(v1::Query::KIND_MASK);
          mask.set_dataset("ds");
          mask.set_image_id("img" + std::to_string(i));
          auto reply = client->Ask(mask, std::chrono::seconds(5));
          if (!reply.ok() || !reply->ok() || reply->mask().click_revision() != kClicksPerImage) {
            return false;
          }
        }
        return true;
      },
      std::chrono::seconds(120)))
      << ReadFile(daemon_log);
  service->Signal(SIGTERM);
  status = service->Wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(daemon_log);

  auto store = Store::Open(config.store).value();
  EXPECT_EQ(store->Count(Family::kImages).value(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(store->Count(Family::kClicks).value(),
            static_cast<uint64_t>(kImages * kClicksPerImage));
  EXPECT_EQ(store->Count(Family::kMasks).value(), static_cast<uint64_t>(kImages));
  EXPECT_EQ(store->GetOffset("images", 0).value(), kImages);
  EXPECT_EQ(store->GetOffset("clicks", 0).value(), kImages * kClicksPerImage);
  store.reset();
  broker.Signal(SIGTERM);
  EXPECT_EQ(broker.Wait(), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace clickdiff
