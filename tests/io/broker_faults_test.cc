// The embedded broker's faults on a schedule (the chaos suite's broker faults): the plan's format,
// and that each fault really happens to a client and is undone.
#include "io/broker_faults.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "io/kafka_producer.h"

namespace clickdiff {
namespace {

using std::chrono::steady_clock;
using ::testing::HasSubstr;

TEST(BrokerFaultsTest, APlanReadsEveryKindOfFaultInOrderOfTime) {
  Result<std::vector<BrokerFault>> plan = ParseBrokerFaults(R"(
- {at: 30, errors: 20, request: heartbeat, error: NOT_COORDINATOR}
- {at: 5, down: 10}
- {at: 12.5, slow: 4, rtt_ms: 300, broker: 2}
)",
                                                            3);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->size(), 3u);
  const BrokerFault& down = (*plan)[0];
  EXPECT_EQ(down.kind, BrokerFault::Kind::kDown);
  EXPECT_EQ(down.at_s, 5);
  EXPECT_EQ(down.for_s, 10);
  EXPECT_EQ(down.broker, 0);
  EXPECT_EQ(down.Describe(), "every broker down for 10 s");
  const BrokerFault& slow = (*plan)[1];
  EXPECT_EQ(slow.kind, BrokerFault::Kind::kSlow);
  EXPECT_EQ(slow.broker, 2);
  EXPECT_EQ(slow.rtt_ms, 300);
  EXPECT_EQ(slow.Describe(), "broker 2 answering 300 ms late for 4 s");
  const BrokerFault& errors = (*plan)[2];
  EXPECT_EQ(errors.kind, BrokerFault::Kind::kErrors);
  EXPECT_EQ(errors.api_key, 12);     // Heartbeat in the Kafka protocol
  EXPECT_EQ(errors.error_code, 16);  // NOT_COORDINATOR
  EXPECT_EQ(errors.count, 20);
  EXPECT_EQ(errors.Describe(), "the next 20 heartbeat requests answered NOT_COORDINATOR");
  Result<std::vector<BrokerFault>> empty = ParseBrokerFaults("", 1);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(BrokerFaultsTest, AWrongPlanIsRefusedNamingTheFaultAndTheField) {
  struct Case {
    const char* yaml;
    const char* says;
  };
  const Case cases[] = {
      {"{at: 1, down: 2}", "a list of faults"},
      {"- [1, 2]", "fault 1: a fault is a map"},
      {"- {at: 1, down: 2}\n- {at: 2, down: 1, for: 3}", "fault 2: unknown field 'for'"},
      {"- {at: 1}", "exactly one of down, slow and errors"},
      {"- {at: 1, down: 2, slow: 2, rtt_ms: 5}", "exactly one of down, slow and errors"},
      {"- {down: 2}", "at: missing"},
      {"- {at: -1, down: 2}", "at: must be 0 or more"},
      {"- {at: 1, down: 0}", "down: must be more than 0 and at most 1000000 seconds"},
      {"- {at: 1e10, down: 1}", "at: must be 0 or more and at most 1000000 seconds"},
      {"- {at: 1, down: two}", "fault 1: down: 'two' is not a number"},
      {"- {at: 1, down: 2, broker: 3}", "broker: 3 is not one of the cluster's ids 1..2"},
      {"- {at: 1, slow: 2}", "slow: needs rtt_ms"},
      {"- {at: 1, down: 2, rtt_ms: 5}", "rtt_ms: only for slow"},
      {"- {at: 1, errors: 3, request: produce}", "errors: needs request and error"},
      {"- {at: 1, errors: 3, request: gossip, error: REQUEST_TIMED_OUT}",
       "request: unknown 'gossip' (one of produce, fetch"},
      {"- {at: 1, errors: 3, request: fetch, error: NO_SUCH_THING}",
       "error: 'NO_SUCH_THING' is not a broker error"},
      {"- {at: 1, errors: 3, request: fetch, error: _TRANSPORT}", "'_TRANSPORT' is not a broker"},
      {"- {at: 1, errors: 0, request: fetch, error: REQUEST_TIMED_OUT}",
       "errors: must be 1..100000, got 0"},
      {"- {at: 1, errors: 2000000000, request: fetch, error: REQUEST_TIMED_OUT}",
       "errors: must be 1..100000"},
      {"- {at: 1, slow: 2, rtt_ms: 3600000}", "rtt_ms: must be 1..600000"},
      {"- {at: 1, errors: 1, request: fetch, error: REQUEST_TIMED_OUT, broker: 1}",
       "broker: not a field of errors"},
      {"- {at: 1, down: 2, request: fetch}", "request: not a field of down or slow"},
      {"- {at: 1, down: [", "not YAML"},
  };
  for (const Case& c : cases) {
    Result<std::vector<BrokerFault>> plan = ParseBrokerFaults(c.yaml, 2);
    ASSERT_FALSE(plan.ok()) << c.yaml;
    EXPECT_EQ(plan.status().code(), StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(plan.status().message(), HasSubstr(c.says)) << c.yaml;
  }
  EXPECT_EQ(LoadBrokerFaults("/nonexistent/plan.yaml", 1).status().code(), StatusCode::kNotFound);
}

class BrokerFaultsRunTest : public testing::Test {
 protected:
  void SetUp() override {
    broker_ = EmbeddedBroker::Start(1).value();
    ASSERT_TRUE(broker_->CreateTopic("t", 1).ok());
    KafkaConfig config;
    // One request in flight: the mock broker does not order an idempotent producer's retries
    // (ops/chaos/faults.yaml).
    config.properties = {{"linger.ms", "1"},
                         {"reconnect.backoff.max.ms", "500"},
                         {"retry.backoff.ms", "300"},
                         {"max.in.flight.requests.per.connection", "1"}};
    producer_ = KafkaProducer::Create(config, broker_->bootstrap_servers()).value();
    Send(1);  // connected and delivering before any fault
    ASSERT_TRUE(producer_->Flush(std::chrono::seconds(20)).ok());
  }

  void Send(int n) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(producer_->Produce("t", "k", "v").ok());
  }

  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<KafkaProducer> producer_;
};

TEST_F(BrokerFaultsRunTest, RecordsSentWhileTheBrokerIsDownAreDeliveredWhenItIsBack) {
  const std::vector<BrokerFault> plan = ParseBrokerFaults("- {at: 0, down: 2}", 1).value();
  const auto start = steady_clock::now();
  std::thread faults(
      [&] { EXPECT_TRUE(RunBrokerFaults(*broker_, plan, [] { return false; }).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Send(5);
  const Status flushed = producer_->Flush(std::chrono::seconds(30));
  const double waited = std::chrono::duration<double>(steady_clock::now() - start).count();
  faults.join();
  ASSERT_TRUE(flushed.ok()) << flushed.ToString();
  EXPECT_EQ(producer_->delivered(), 6u);
  EXPECT_EQ(producer_->failed(), 0u);
  EXPECT_GE(waited, 1.9) << "the records went through while the broker was meant to be down";
}

TEST_F(BrokerFaultsRunTest, ThePlansErrorsAnswerTheNextRequestsOfTheirKindThenNoMore) {
  // Three retriable refusals: the record goes through on the fourth try, after three retry
  // backoffs of 300 ms; the next record finds no refusal left.
  const std::vector<BrokerFault> plan =
      ParseBrokerFaults("- {at: 0, errors: 3, request: produce, error: NOT_ENOUGH_REPLICAS}", 1)
          .value();
  ASSERT_TRUE(RunBrokerFaults(*broker_, plan, [] { return false; }).ok());
  auto timed_send = [&] {
    const auto start = steady_clock::now();
    Send(1);
    EXPECT_TRUE(producer_->Flush(std::chrono::seconds(30)).ok());
    return std::chrono::duration<double>(steady_clock::now() - start).count();
  };
  const double refused = timed_send();
  const double clear = timed_send();
  EXPECT_GE(refused, 0.85) << "the produce requests were not refused three times";
  EXPECT_LT(clear, refused);
  EXPECT_EQ(producer_->delivered(), 3u);  // SetUp's record and these two
  EXPECT_EQ(producer_->failed(), 0u);
}

TEST_F(BrokerFaultsRunTest, StoppedEarlyThePlanLeavesTheBrokerUp) {
  const std::vector<BrokerFault> plan = ParseBrokerFaults("- {at: 0, down: 600}", 1).value();
  std::atomic<bool> stop{false};
  std::thread faults(
      [&] { EXPECT_TRUE(RunBrokerFaults(*broker_, plan, [&] { return stop.load(); }).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto stopped = steady_clock::now();
  stop = true;
  faults.join();
  EXPECT_LT(std::chrono::duration<double>(steady_clock::now() - stopped).count(), 1.0);
  Send(2);
  const Status flushed = producer_->Flush(std::chrono::seconds(30));
  ASSERT_TRUE(flushed.ok()) << flushed.ToString();
  EXPECT_EQ(producer_->delivered(), 3u);
  EXPECT_EQ(broker_->SetDown(2, true).code(), StatusCode::kInvalidArgument);  // one broker: id 1
}

}  // namespace
}  // namespace clickdiff
