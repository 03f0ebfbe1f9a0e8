// ZmqServer, MaskSubscriber and QueryClient over real TCP sockets on 127.0.0.1 (OS-chosen ports).
//
// PUB/SUB subscriptions reach the server a few ms after Connect ("slow joiner"). Instead of
// sleeping, tests seed a "sync" mask with Remember() before connecting and wait for its resend:
// once it arrives the subscription is in place.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "io/curve_key.h"
#include "io/zmq_client.h"
#include "io/zmq_server.h"

namespace clickdiff {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kWait{30'000};  // generous upper bound; tests finish far sooner

v1::MaskResult Mask(const std::string& dataset, const std::string& image_id, uint64_t revision,
                    size_t bytes = 16) {
  v1::MaskResult m;
  m.set_dataset(dataset);
  m.set_image_id(image_id);
  m.set_width(static_cast<uint32_t>(bytes));
  m.set_height(1);
  m.set_mask(std::string(bytes, static_cast<char>(revision & 0x7f)));
  m.set_click_revision(revision);
  m.set_aggregation("majority");
  return m;
}

v1::QueryReply EchoStatus(const v1::Query&) {
  v1::QueryReply reply;
  reply.set_ok(true);
  return reply;
}

std::unique_ptr<ZmqServer> StartServer(ZmqConfig config = {},
                                       ZmqServer::QueryHandler handler = EchoStatus) {
  Result<std::unique_ptr<ZmqServer>> server = ZmqServer::Bind(config, std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(*server) : nullptr;
}

// Receives until a mask with `image_id` arrives (skipping others) or kWait passes.
std::optional<v1::MaskResult> ReceiveImage(MaskSubscriber& sub, const std::string& image_id) {
  const auto deadline = Clock::now() + kWait;
  while (Clock::now() < deadline) {
    Result<std::optional<v1::MaskResult>> r = sub.Receive(milliseconds(50));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return std::nullopt;
    if (r->has_value() && (*r)->image_id() == image_id) return **r;
  }
  return std::nullopt;
}

// Waits until the socket thread has sent `count` published masks. A subscriber that connects
// while masks are still queued may get those live copies (older) before the resent current one;
// tests of the resend connect after this.
void WaitUntilSent(const ZmqServer& server, uint64_t count) {
  const auto deadline = Clock::now() + kWait;
  while (server.published() < count && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(server.published(), count);
}

// Connects a subscriber to `prefix` and returns once its subscription has reached the server.
// `dataset`/`sync_image` must form a topic under `prefix`.
std::unique_ptr<MaskSubscriber> ConnectSynced(ZmqServer& server, const std::string& prefix,
                                              const std::string& dataset,
                                              const std::string& sync_image,
                                              const ZmqClientOptions& options = {}) {
  server.Remember(Mask(dataset, sync_image, 0));
  Result<std::unique_ptr<MaskSubscriber>> sub =
      MaskSubscriber::Connect(server.publish_endpoint(), prefix, options);
  EXPECT_TRUE(sub.ok()) << sub.status().ToString();
  if (!sub.ok()) return nullptr;
  EXPECT_TRUE(ReceiveImage(**sub, sync_image).has_value()) << "subscription never arrived";
  return std::move(*sub);
}

TEST(ZmqServerTest, MaskTopicJoinsDatasetAndImage) {
  EXPECT_EQ(MaskTopic("liver", "img7"), "mask.liver.img7");
}

TEST(ZmqServerTest, BindsOsChosenPorts) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->publish_endpoint().rfind("tcp://127.0.0.1:", 0), 0u);
  EXPECT_EQ(server->publish_endpoint().find('*'), std::string::npos);
  EXPECT_EQ(server->query_endpoint().find('*'), std::string::npos);
  EXPECT_NE(server->publish_endpoint(), server->query_endpoint());
}

TEST(ZmqServerTest, PublishedMaskReachesSubscriber) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto sub = ConnectSynced(*server, "mask.ds.", "ds", "sync");
  ASSERT_NE(sub, nullptr);

  for (uint64_t i = 1; i <= 3; ++i) {
    EXPECT_EQ(server->Publish(Mask("ds", "img" + std::to_string(i), i, 64)), i);
  }
  for (uint64_t i = 1; i <= 3; ++i) {
    std::optional<v1::MaskResult> got = ReceiveImage(*sub, "img" + std::to_string(i));
    ASSERT_TRUE(got.has_value()) << "img" << i;
    EXPECT_EQ(got->sequence(), i);
    EXPECT_EQ(got->dataset(), "ds");
    EXPECT_EQ(got->click_revision(), i);
    EXPECT_EQ(got->mask(), Mask("ds", "img", i, 64).mask());
    EXPECT_EQ(got->aggregation(), "majority");
  }
  // published() counts what the socket thread sent; it has sent all three by now.
  EXPECT_EQ(server->published(), 3u);
}

TEST(ZmqServerTest, SubscriberOnlyGetsItsPrefix) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto sub = ConnectSynced(*server, "mask.ds.A", "ds", "A-sync");
  ASSERT_NE(sub, nullptr);

  server->Publish(Mask("ds", "B", 1));
  server->Publish(Mask("other", "A", 1));
  server->Publish(Mask("ds", "A", 7));
  std::optional<v1::MaskResult> got = ReceiveImage(*sub, "A");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->dataset(), "ds");
  EXPECT_EQ(got->click_revision(), 7u);
  // Nothing else was queued for this subscriber (B and other.A were published before A).
  Result<std::optional<v1::MaskResult>> more = sub->Receive(milliseconds(100));
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(more->has_value()) << (*more)->dataset() << "/" << (*more)->image_id();
}

TEST(ZmqServerTest, LateSubscriberGetsCurrentMask) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  server->Publish(Mask("ds", "A", 1));
  const uint64_t v2 = server->Publish(Mask("ds", "A", 2));
  v1::MaskResult preview = Mask("ds", "A", 3);  // a click's preview is not the current mask
  preview.set_preview(true);
  server->Publish(preview);
  v1::MaskResult seeded = Mask("ds", "B", 5);
  seeded.set_sequence(41);  // e.g. read back from the store: kept verbatim
  server->Remember(seeded);
  WaitUntilSent(*server, 3);

  auto a = MaskSubscriber::Connect(server->publish_endpoint(), "mask.ds.A");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  std::optional<v1::MaskResult> got = ReceiveImage(**a, "A");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->click_revision(), 2u);
  EXPECT_EQ(got->sequence(), v2);

  auto b = MaskSubscriber::Connect(server->publish_endpoint(), "mask.ds.B");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  got = ReceiveImage(**b, "B");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->click_revision(), 5u);
  EXPECT_EQ(got->sequence(), 41u);
  // Remember() sends nothing; numbering goes on above the remembered mask's number.
  EXPECT_EQ(server->Publish(Mask("ds", "C", 1)), 42u);
}

// The images whose masks a new subscriber to `prefix` is resent: the first may take until kWait
// (the subscription has to reach the server), the rest come within 500 ms of each other.
std::set<std::string> ResentImages(const ZmqServer& server, const std::string& prefix) {
  auto sub = MaskSubscriber::Connect(server.publish_endpoint(), prefix);
  EXPECT_TRUE(sub.ok()) << sub.status().ToString();
  std::set<std::string> images;
  if (!sub.ok()) return images;
  milliseconds quiet = kWait;
  for (;;) {
    Result<std::optional<v1::MaskResult>> r = (*sub)->Receive(quiet);
    if (!r.ok() || !r->has_value()) return images;
    images.insert((*r)->image_id());
    quiet = milliseconds(500);
  }
}

TEST(ZmqServerTest, TheLateSubscribersTableKeepsTheNewestMasksThatFitItsBudget) {
  ZmqConfig config;
  config.late_joiner_budget_mb = 1;
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  constexpr size_t kBig = 400 * 1024;  // two fit in 1 MiB, three do not
  v1::MaskResult a = Mask("ds", "A", 1, kBig);
  a.set_sequence(10);
  server->Remember(a);
  server->Publish(Mask("ds", "B", 1, kBig));
  server->Publish(Mask("ds", "C", 1, kBig));  // A, published longest ago, leaves the table
  v1::MaskResult older = Mask("ds", "D", 1, kBig);
  older.set_sequence(5);  // read back from the store after newer ones: it is the one to go
  server->Remember(older);
  WaitUntilSent(*server, 2);
  EXPECT_EQ(ResentImages(*server, "mask.ds."), (std::set<std::string>{"B", "C"}));
  // A new mask of B makes C the oldest: E pushes C out. Masks of any size keep the count right.
  server->Publish(Mask("ds", "B", 2, kBig));
  server->Publish(Mask("ds", "E", 1, kBig));
  server->Publish(Mask("ds", "F", 1, 16));
  WaitUntilSent(*server, 5);
  EXPECT_EQ(ResentImages(*server, "mask.ds."), (std::set<std::string>{"B", "E", "F"}));

  config.late_joiner_budget_mb = 0;  // nothing resent
  auto none = StartServer(config);
  ASSERT_NE(none, nullptr);
  none->Publish(Mask("ds", "A", 1));
  WaitUntilSent(*none, 1);
  // A subscriber that gets live masks (so its subscription arrived) is never resent A's.
  auto sub = MaskSubscriber::Connect(none->publish_endpoint(), "mask.ds.");
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  std::set<std::string> got;
  const auto deadline = Clock::now() + kWait;
  while (got.count("live") == 0 && Clock::now() < deadline) {
    none->Publish(Mask("ds", "live", 1));
    Result<std::optional<v1::MaskResult>> r = (*sub)->Receive(milliseconds(100));
    if (r.ok() && r->has_value()) got.insert((*r)->image_id());
  }
  for (;;) {  // and whatever else comes
    Result<std::optional<v1::MaskResult>> r = (*sub)->Receive(milliseconds(300));
    if (!r.ok() || !r->has_value()) break;
    got.insert((*r)->image_id());
  }
  EXPECT_EQ(got, (std::set<std::string>{"live"}));
  config.late_joiner_budget_mb = -1;
  Result<std::unique_ptr<ZmqServer>> refused = ZmqServer::Bind(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("zmq.late_joiner_budget_mb"), std::string::npos)
      << refused.status().ToString();
}

TEST(ZmqServerTest, ARepeatedSubscriptionCannotMultiplyTheResends) {
  ZmqConfig config;
  config.send_high_water_mark = 1000000;  // count every message sent, drop none
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  constexpr int kMasks = 2000;  // several rounds of the paced resend
  for (int i = 0; i < kMasks; ++i) server->Remember(Mask("ds", "img" + std::to_string(i), 1));

  // An observer gets every current mask once its own subscription's resend is through.
  zmq::context_t context;
  zmq::socket_t observer(context, zmq::socket_type::sub);
  observer.set(zmq::sockopt::rcvhwm, 0);
  observer.connect(server->publish_endpoint());
  observer.set(zmq::sockopt::subscribe, "mask.");
  std::set<std::string> seen;
  size_t received = 0;
  auto drain = [&](std::chrono::milliseconds quiet) {
    std::vector<zmq::message_t> parts;
    for (;;) {
      observer.set(zmq::sockopt::rcvtimeo, static_cast<int>(quiet.count()));
      parts.clear();
      if (!zmq::recv_multipart(observer, std::back_inserter(parts))) return;
      ++received;
      seen.insert(parts[0].to_string());
    }
  };
  drain(milliseconds(1000));
  EXPECT_EQ(seen.size(), static_cast<size_t>(kMasks)) << "paced, the resend still covers all";
  received = 0;

  // A peer subscribing to the same prefix 300 times in a row: the resend in progress and one
  // waiting go out (a few more if the subscriptions trickle in), not 300.
  zmq::socket_t spammer(context, zmq::socket_type::xsub);
  spammer.connect(server->publish_endpoint());
  const std::string subscribe = std::string(1, '\x01') + "mask.";
  for (int i = 0; i < 300; ++i) spammer.send(zmq::buffer(subscribe), zmq::send_flags::none);
  drain(milliseconds(1000));
  EXPECT_GE(received, static_cast<size_t>(kMasks)) << "the first of them is answered";
  // Without the de-duplication: about 300 x kMasks.
  EXPECT_LE(received, static_cast<size_t>(10 * kMasks)) << "the repeats are not";
}

TEST(ZmqServerTest, SequenceNumbersGoOnAboveTheLastRunsReservation) {
  // A restarted service: its previous run reserved numbers up to 2000, so it may have sent any of
  // them (previews included, which are not stored); a client keeping the highest per topic
  // would drop anything numbered lower.
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  std::vector<uint64_t> reserved;
  server->ContinueSequence(2000, [&](uint64_t upto) {
    reserved.push_back(upto);
    return Status::Ok();
  });
  EXPECT_EQ(server->Publish(Mask("ds", "A", 1)), 2001u);
  ASSERT_EQ(reserved, (std::vector<uint64_t>{2000 + ZmqServer::kSequenceBlock}));
  for (uint64_t i = 1; i < ZmqServer::kSequenceBlock; ++i) server->Publish(Mask("ds", "A", 1));
  EXPECT_EQ(reserved.size(), 1u) << "one reservation per block";
  EXPECT_EQ(server->Publish(Mask("ds", "A", 1)), 2001 + ZmqServer::kSequenceBlock);
  EXPECT_EQ(reserved.back(), 2000 + 2 * ZmqServer::kSequenceBlock);

  // A reservation that fails is logged, tried once per block; masks are still published.
  auto failing = StartServer();
  ASSERT_NE(failing, nullptr);
  int tries = 0;
  failing->ContinueSequence(0, [&](uint64_t) {
    ++tries;
    return Unavailable("disk full");
  });
  EXPECT_EQ(failing->Publish(Mask("ds", "A", 1)), 1u);
  EXPECT_EQ(failing->Publish(Mask("ds", "A", 2)), 2u);
  EXPECT_EQ(tries, 1);
  WaitUntilSent(*failing, 2);
}

TEST(ZmqServerTest, ConcurrentPublishersKeepNewestAsCurrent) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  constexpr int kThreads = 4;
  constexpr int kEach = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&server, t] {
      for (int i = 0; i < kEach; ++i) server->Publish(Mask("ds", "A", t));
    });
  }
  for (std::thread& t : threads) t.join();
  WaitUntilSent(*server, kThreads * kEach);
  auto sub = MaskSubscriber::Connect(server->publish_endpoint(), "mask.ds.A");
  ASSERT_TRUE(sub.ok());
  std::optional<v1::MaskResult> got = ReceiveImage(**sub, "A");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->sequence(), uint64_t{kThreads * kEach});
}

TEST(ZmqServerTest, SlowSubscriberDoesNotBlockPublisher) {
  ZmqConfig config;
  config.send_high_water_mark = 10;
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  // Reads only its sync mask until the end: its queues fill and the server drops for it.
  auto slow = ConnectSynced(*server, "mask.", "ds", "sync");
  ASSERT_NE(slow, nullptr);
  auto fast = ConnectSynced(*server, "mask.", "ds", "sync");
  ASSERT_NE(fast, nullptr);

  constexpr uint64_t kMessages = 10000;
  // 16 KiB each: 160 MiB in all, far more than the slow subscriber's socket buffers hold.
  constexpr size_t kBytes = 16 * 1024;
  std::atomic<uint64_t> fast_burst{0};
  std::atomic<bool> fast_saw_after{false};
  std::thread reader([&] {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (!fast_saw_after.load() && Clock::now() < deadline) {
      Result<std::optional<v1::MaskResult>> r = fast->Receive(milliseconds(50));
      if (!r.ok() || !r->has_value()) continue;
      if ((*r)->image_id() == "img") ++fast_burst;
      if ((*r)->image_id() == "after") fast_saw_after = true;
    }
  });
  const auto start = Clock::now();
  uint64_t last = 0;
  for (uint64_t i = 0; i < kMessages; ++i) last = server->Publish(Mask("ds", "img", i, kBytes));
  const auto elapsed = Clock::now() - start;
  // A publisher that blocked on the stuck subscriber would hang here: the bound catches a hang,
  // it does not measure speed.
  EXPECT_LT(elapsed, std::chrono::seconds(30));
  EXPECT_EQ(last, kMessages);

  // With a high-water mark of 10 even the fast subscriber may lose the tail of a burst it cannot
  // keep up with; what must hold is that the stuck subscriber does not hold up delivery to it. A
  // mask published after the burst reaches it (republished until its queue has room again).
  const auto after_deadline = Clock::now() + std::chrono::seconds(60);
  while (!fast_saw_after.load() && Clock::now() < after_deadline) {
    server->Publish(Mask("ds", "after", 1));
    std::this_thread::sleep_for(milliseconds(50));
  }
  reader.join();
  EXPECT_TRUE(fast_saw_after.load());
  EXPECT_GT(fast_burst.load(), 0u);

  // The slow subscriber really overflowed: far fewer burst messages are waiting for it.
  uint64_t slow_burst = 0;
  for (;;) {
    Result<std::optional<v1::MaskResult>> r = slow->Receive(milliseconds(100));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (!r->has_value()) break;
    if ((*r)->image_id() == "img") ++slow_burst;
  }
  EXPECT_LT(slow_burst, kMessages / 2);
  // The latest mask of the burst is still the current one for a subscriber that asks now.
  auto late = MaskSubscriber::Connect(server->publish_endpoint(), "mask.ds.img");
  ASSERT_TRUE(late.ok());
  std::optional<v1::MaskResult> current = ReceiveImage(**late, "img");
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->sequence(), kMessages);
}

// Query handling: answers by kind; KIND_IMAGE throws, image "slow" answers late.
v1::QueryReply Handle(const v1::Query& query) {
  v1::QueryReply reply;
  switch (query.kind()) {
    case v1::Query::KIND_STATUS:
      reply.set_ok(true);
      reply.mutable_status()->set_masks(12);
      return reply;
    case v1::Query::KIND_MASK:
      if (query.image_id() == "slow") {
        std::this_thread::sleep_for(milliseconds(300));
        reply.set_error("late reply");
        return reply;
      }
      if (query.dataset() != "ds" || query.image_id() != "A") {
        reply.set_error("no mask for " + query.dataset() + "/" + query.image_id());
        return reply;
      }
      reply.set_ok(true);
      *reply.mutable_mask() = Mask("ds", "A", 3);
      return reply;
    case v1::Query::KIND_IMAGE:
      throw std::runtime_error("store offline");
    default:
      reply.set_error("unknown kind");
      return reply;
  }
}

v1::Query MakeQuery(v1::Query::Kind kind, const std::string& image_id = "") {
  v1::Query q;
  q.set_kind(kind);
  q.set_dataset("ds");
  q.set_image_id(image_id);
  return q;
}

TEST(QueryClientTest, QueryRoundTrip) {
  auto server = StartServer({}, Handle);
  ASSERT_NE(server, nullptr);
  auto client = QueryClient::Connect(server->query_endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  Result<v1::QueryReply> status = (*client)->Ask(MakeQuery(v1::Query::KIND_STATUS), kWait);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(status->ok());
  EXPECT_EQ(status->status().masks(), 12u);

  Result<v1::QueryReply> mask = (*client)->Ask(MakeQuery(v1::Query::KIND_MASK, "A"), kWait);
  ASSERT_TRUE(mask.ok()) << mask.status().ToString();
  EXPECT_TRUE(mask->ok());
  EXPECT_EQ(mask->mask().click_revision(), 3u);

  Result<v1::QueryReply> missing = (*client)->Ask(MakeQuery(v1::Query::KIND_MASK, "Z"), kWait);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->ok());
  EXPECT_EQ(missing->error(), "no mask for ds/Z");

  Result<v1::QueryReply> thrown = (*client)->Ask(MakeQuery(v1::Query::KIND_IMAGE, "A"), kWait);
  ASSERT_TRUE(thrown.ok()) << thrown.status().ToString();
  EXPECT_FALSE(thrown->ok());
  EXPECT_NE(thrown->error().find("store offline"), std::string::npos) << thrown->error();
}

// Sends `frames` from a raw DEALER and returns the reply's frames.
std::vector<std::string> RawExchange(const std::string& endpoint,
                                     const std::vector<std::string>& frames,
                                     milliseconds wait = kWait) {
  zmq::context_t context;
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::rcvtimeo, static_cast<int>(wait.count()));
  dealer.connect(endpoint);
  std::vector<zmq::message_t> out;
  for (const std::string& f : frames) out.emplace_back(f.data(), f.size());
  zmq::send_multipart(dealer, out);
  std::vector<zmq::message_t> in;
  (void)zmq::recv_multipart(dealer, std::back_inserter(in));
  std::vector<std::string> reply;
  for (const zmq::message_t& m : in) reply.push_back(m.to_string());
  return reply;
}

v1::QueryReply ParseReply(const std::string& bytes) {
  v1::QueryReply reply;
  EXPECT_TRUE(reply.ParseFromString(bytes));
  return reply;
}

TEST(QueryClientTest, MalformedQueryGetsReasonWithOrWithoutDelimiter) {
  auto server = StartServer({}, Handle);
  ASSERT_NE(server, nullptr);
  const std::string garbage = "\xff\xff\xff\xff";

  std::vector<std::string> delimited = RawExchange(server->query_endpoint(), {"", garbage});
  ASSERT_EQ(delimited.size(), 2u);
  EXPECT_EQ(delimited[0], "");
  v1::QueryReply reply = ParseReply(delimited[1]);
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().rfind("malformed Query: ", 0), 0u) << reply.error();

  std::vector<std::string> bare = RawExchange(server->query_endpoint(), {garbage});
  ASSERT_EQ(bare.size(), 1u);
  EXPECT_EQ(ParseReply(bare[0]).error().rfind("malformed Query: ", 0), 0u);

  // A well-formed Query without the delimiter is answered too.
  std::string status;
  ASSERT_TRUE(MakeQuery(v1::Query::KIND_STATUS).SerializeToString(&status));
  bare = RawExchange(server->query_endpoint(), {status});
  ASSERT_EQ(bare.size(), 1u);
  EXPECT_TRUE(ParseReply(bare[0]).ok());

  std::vector<std::string> extra = RawExchange(server->query_endpoint(), {"a", "b", "c"});
  ASSERT_EQ(extra.size(), 1u);
  reply = ParseReply(extra[0]);
  EXPECT_FALSE(reply.ok());
  EXPECT_NE(reply.error().find("got 3 frames"), std::string::npos) << reply.error();
}

TEST(QueryClientTest, AnswerRequestRefusesBytesThatAreNotAQueryAndHandlersThatThrow) {
  int calls = 0;
  ZmqServer::QueryHandler handler = [&](const v1::Query& query) {
    ++calls;
    if (query.image_id().empty()) throw std::runtime_error("no image id");
    v1::QueryReply reply;
    reply.set_ok(true);
    reply.set_error(query.image_id());
    return reply;
  };
  const std::string garbage("\xff\xff\xff\xff\xff", 5);
  v1::QueryReply reply = ZmqServer::AnswerRequest(garbage.data(), garbage.size(), handler);
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error(), "malformed Query: 5 bytes that do not parse as clickdiff.v1.Query");
  EXPECT_EQ(calls, 0);

  v1::Query query;
  query.set_kind(v1::Query::KIND_IMAGE);
  std::string bytes = query.SerializeAsString();
  reply = ZmqServer::AnswerRequest(bytes.data(), bytes.size(), handler);
  EXPECT_FALSE(reply.ok());
  EXPECT_NE(reply.error().find("no image id"), std::string::npos) << reply.error();

  query.set_image_id("a");
  bytes = query.SerializeAsString();
  reply = ZmqServer::AnswerRequest(bytes.data(), bytes.size(), handler);
  EXPECT_TRUE(reply.ok());
  EXPECT_EQ(reply.error(), "a");
  EXPECT_EQ(calls, 2);

  reply = ZmqServer::AnswerRequest(bytes.data(), bytes.size(), nullptr);
  EXPECT_FALSE(reply.ok());
  EXPECT_NE(reply.error().find("not answering queries"), std::string::npos) << reply.error();
}

TEST(QueryClientTest, AnOversizedQueryIsDroppedAndTheServerGoesOn) {
  auto server = StartServer({}, Handle);
  ASSERT_NE(server, nullptr);
  // A peer sending a megabyte is disconnected (ZMQ_MAXMSGSIZE): no reply, nothing buffered.
  EXPECT_TRUE(
      RawExchange(server->query_endpoint(), {"", std::string(1 << 20, 'q')}, milliseconds(2000))
          .empty());
  std::string status;
  ASSERT_TRUE(MakeQuery(v1::Query::KIND_STATUS).SerializeToString(&status));
  std::vector<std::string> reply = RawExchange(server->query_endpoint(), {"", status});
  ASSERT_EQ(reply.size(), 2u);
  EXPECT_TRUE(ParseReply(reply[1]).ok());
}

TEST(QueryClientTest, TimedOutReplyIsNotReadAsTheNextOne) {
  auto server = StartServer({}, Handle);
  ASSERT_NE(server, nullptr);
  auto client = QueryClient::Connect(server->query_endpoint());
  ASSERT_TRUE(client.ok());

  Result<v1::QueryReply> late =
      (*client)->Ask(MakeQuery(v1::Query::KIND_MASK, "slow"), milliseconds(50));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(late.status().message(), "no reply from " + server->query_endpoint() + " within 50 ms");

  Result<v1::QueryReply> next = (*client)->Ask(MakeQuery(v1::Query::KIND_STATUS), kWait);
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_TRUE(next->ok()) << next->error();
  EXPECT_EQ(next->status().masks(), 12u);
}

TEST(QueryClientTest, NoServerTimesOut) {
  // A port nothing listens on: take one from a server, then close it.
  std::string endpoint;
  {
    auto server = StartServer();
    ASSERT_NE(server, nullptr);
    endpoint = server->query_endpoint();
  }
  auto client = QueryClient::Connect(endpoint);
  ASSERT_TRUE(client.ok());
  Result<v1::QueryReply> r = (*client)->Ask(MakeQuery(v1::Query::KIND_STATUS), milliseconds(30));
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

// A config with CURVE on and a fresh server key pair.
ZmqConfig CurveConfig() {
  const CurveKeyPair pair = NewCurveKeyPair().value();
  ZmqConfig config;
  config.curve.enabled = true;
  config.curve.server_public_key = pair.public_key;
  config.curve.server_secret_key = pair.secret_key;
  return config;
}

// A fresh client key pair, as options that connect with it to a server of `config`.
ZmqClientOptions NewClient(const ZmqConfig& config) {
  const CurveKeyPair pair = NewCurveKeyPair().value();
  ZmqClientOptions options;
  options.server_public_key = config.curve.server_public_key;
  options.client_public_key = pair.public_key;
  options.client_secret_key = pair.secret_key;
  return options;
}

// A client the server of `config` lets in: its public key joins zmq.curve.client_keys.
ZmqClientOptions AllowClient(ZmqConfig& config) {
  ZmqClientOptions options = NewClient(config);
  config.curve.client_keys.push_back(options.client_public_key);
  return options;
}

// Whether a subscriber with `options` gets a mask remembered before it connects (the late-joiner
// resend), within `wait`.
bool SubscriberGetsMasks(ZmqServer& server, const ZmqClientOptions& options,
                         std::chrono::milliseconds wait) {
  server.Remember(Mask("ds", "current", 3));
  auto sub = MaskSubscriber::Connect(server.publish_endpoint(), "mask.", options);
  EXPECT_TRUE(sub.ok()) << sub.status().ToString();
  if (!sub.ok()) return false;
  Result<std::optional<v1::MaskResult>> got = (*sub)->Receive(wait);
  return got.ok() && got->has_value();
}

bool QueriesAreAnswered(ZmqServer& server, const ZmqClientOptions& options,
                        std::chrono::milliseconds wait) {
  auto client = QueryClient::Connect(server.query_endpoint(), options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() && (*client)->Ask(MakeQuery(v1::Query::KIND_STATUS), wait).ok();
}

TEST(ZmqServerTest, CurveEncryptedPublishAndQuery) {
  ZmqConfig config = CurveConfig();
  const ZmqClientOptions curve = AllowClient(config);
  auto server = StartServer(config, Handle);
  ASSERT_NE(server, nullptr);
  auto plain = MaskSubscriber::Connect(server->publish_endpoint(), "mask.");
  ASSERT_TRUE(plain.ok());
  auto secure = ConnectSynced(*server, "mask.", "ds", "sync", curve);
  ASSERT_NE(secure, nullptr);
  server->Publish(Mask("ds", "A", 9));
  std::optional<v1::MaskResult> got = ReceiveImage(*secure, "A");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->click_revision(), 9u);

  // The plaintext subscriber's handshake is refused: neither the resend nor the publish arrives.
  Result<std::optional<v1::MaskResult>> nothing = (*plain)->Receive(milliseconds(200));
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(nothing->has_value());

  auto client = QueryClient::Connect(server->query_endpoint(), curve);
  ASSERT_TRUE(client.ok());
  Result<v1::QueryReply> status = (*client)->Ask(MakeQuery(v1::Query::KIND_STATUS), kWait);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(status->ok());

  auto plain_client = QueryClient::Connect(server->query_endpoint());
  ASSERT_TRUE(plain_client.ok());
  EXPECT_FALSE((*plain_client)->Ask(MakeQuery(v1::Query::KIND_STATUS), milliseconds(100)).ok());
}

TEST(ZmqServerTest, OnlyClientsOnTheAllowListGetMasksAndAnswers) {
  ZmqConfig config = CurveConfig();
  const ZmqClientOptions allowed = AllowClient(config);
  const ZmqClientOptions stranger = NewClient(config);
  ZmqClientOptions fresh;  // a pair generated per connection, as clients without a key file
  fresh.server_public_key = config.curve.server_public_key;
  {
    auto server = StartServer(config, Handle);
    ASSERT_NE(server, nullptr);
    EXPECT_TRUE(SubscriberGetsMasks(*server, allowed, kWait));
    EXPECT_TRUE(QueriesAreAnswered(*server, allowed, kWait));
    EXPECT_FALSE(SubscriberGetsMasks(*server, stranger, milliseconds(300)));
    EXPECT_FALSE(QueriesAreAnswered(*server, stranger, milliseconds(300)));
    EXPECT_FALSE(SubscriberGetsMasks(*server, fresh, milliseconds(300)));
    EXPECT_FALSE(QueriesAreAnswered(*server, fresh, milliseconds(300)));
  }
  // The stranger's .pub file in the allow-list directory lets it in.
  const std::string dir = testing::TempDir() + "clickdiff_zap_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteCurveKeyFiles({stranger.client_public_key, stranger.client_secret_key},
                                 dir + "/stranger")
                  .ok());
  std::filesystem::remove(dir + "/stranger");  // a directory of .pub files: the secret stays away
  config.curve.client_keys_dir = dir;
  auto server = StartServer(config, Handle);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(SubscriberGetsMasks(*server, stranger, kWait));
  EXPECT_TRUE(QueriesAreAnswered(*server, stranger, kWait));
  EXPECT_TRUE(QueriesAreAnswered(*server, allowed, kWait));
  EXPECT_FALSE(QueriesAreAnswered(*server, fresh, milliseconds(300)));
  std::filesystem::remove_all(dir);
}

TEST(ZmqServerTest, CurveWithNoAllowedClientDoesNotStart) {
  ZmqConfig config = CurveConfig();
  auto refused = ZmqServer::Bind(config, EchoStatus);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("zmq.curve.client_keys"), std::string::npos)
      << refused.status().message();
  config.curve.client_keys = {"not a key"};
  refused = ZmqServer::Bind(config, EchoStatus);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("zmq.curve.client_keys[0]"), std::string::npos)
      << refused.status().message();
  config.curve.client_keys.clear();
  config.curve.client_keys_dir = "/nonexistent/clickdiff-clients";
  refused = ZmqServer::Bind(config, EchoStatus);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("client_keys_dir"), std::string::npos)
      << refused.status().message();
}

TEST(CurveKeyFileTest, KeyFilesRoundTripKeepTheSecretPrivateAndAreNeverOverwritten) {
  namespace fs = std::filesystem;
  const std::string dir = testing::TempDir() + "clickdiff_keys_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const CurveKeyPair pair = NewCurveKeyPair().value();
  const std::string path = dir + "/server.key";
  ASSERT_TRUE(WriteCurveKeyFiles(pair, path).ok());
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(path + ".pub").permissions() & fs::perms::others_read,
            fs::perms::others_read);
  Result<CurveKeyPair> read = ReadCurveKeyPairFile(path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->public_key, pair.public_key);
  EXPECT_EQ(read->secret_key, pair.secret_key);
  Result<CurveKeyPair> pub = ReadCurveKeyFile(path + ".pub");
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(pub->public_key, pair.public_key);
  EXPECT_TRUE(pub->secret_key.empty());
  EXPECT_EQ(ReadCurveKeyPairFile(path + ".pub").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteCurveKeyFiles(NewCurveKeyPair().value(), path).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadCurveKeyPairFile(path).value().secret_key, pair.secret_key) << "kept";
  EXPECT_EQ(ReadCurveKeyFile(dir + "/missing.key").status().code(), StatusCode::kNotFound);
  // Another pair's secret beside this public key is refused, naming the file.
  {
    std::ofstream bad(dir + "/mixed.key");
    bad << "public_key: \"" << pair.public_key << "\"\nsecret_key: \""
        << NewCurveKeyPair().value().secret_key << "\"\n";
  }
  Status mixed = ReadCurveKeyFile(dir + "/mixed.key").status();
  EXPECT_EQ(mixed.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(mixed.message().find("mixed.key"), std::string::npos) << mixed.message();

  // A server reads its keys from the file instead of the config.
  ZmqConfig config;
  config.curve.enabled = true;
  config.curve.server_key_file = path;
  ZmqClientOptions client = AllowClient(config);
  client.server_public_key = pair.public_key;
  auto server = StartServer(config, Handle);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(QueriesAreAnswered(*server, client, kWait));
  fs::remove_all(dir);
}

TEST(ZmqServerTest, BadCurveKeysAreRejectedByName) {
  ZmqConfig config = CurveConfig();
  config.curve.server_secret_key = std::string(40, '"');  // '"' is not a Z85 character
  auto bad = ZmqServer::Bind(config, EchoStatus);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("zmq.curve.server_secret_key"), std::string::npos)
      << bad.status().message();

  config.curve.server_secret_key = "short";
  bad = ZmqServer::Bind(config, EchoStatus);
  EXPECT_NE(bad.status().message().find("zmq.curve.server_secret_key"), std::string::npos);

  // A valid secret key, but not the one server_public_key belongs to.
  config.curve.server_secret_key = CurveConfig().curve.server_secret_key;
  bad = ZmqServer::Bind(config, EchoStatus);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("zmq.curve.server_public_key"), std::string::npos)
      << bad.status().message();

  ZmqClientOptions options;
  options.server_public_key = "not a key";
  auto sub = MaskSubscriber::Connect("tcp://127.0.0.1:1", "mask.", options);
  ASSERT_FALSE(sub.ok());
  EXPECT_NE(sub.status().message().find("server_public_key"), std::string::npos);
}

TEST(ZmqServerTest, BindToBusyPortFailsWithEndpointInMessage) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  ZmqConfig busy;
  busy.publish_endpoint = first->publish_endpoint();
  auto second = ZmqServer::Bind(busy, EchoStatus);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(first->publish_endpoint()), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find("zmq.publish_endpoint"), std::string::npos);

  busy = ZmqConfig();
  busy.query_endpoint = "bogus://nowhere";
  second = ZmqServer::Bind(busy, EchoStatus);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(second.status().message().find("bogus://nowhere"), std::string::npos)
      << second.status().message();
}

TEST(MaskSubscriberTest, MalformedMessageNamesTopic) {
  zmq::context_t context;
  zmq::socket_t pub(context, zmq::socket_type::pub);
  pub.set(zmq::sockopt::linger, 0);
  pub.bind("tcp://127.0.0.1:*");
  auto sub = MaskSubscriber::Connect(pub.get(zmq::sockopt::last_endpoint), "mask.");
  ASSERT_TRUE(sub.ok());

  // Sends `frames` until the subscriber reports an error for their topic (its subscription takes
  // a few ms; copies sent before an earlier call's error may still be queued).
  auto first_error = [&](const std::vector<std::string>& frames) -> Status {
    const auto deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      std::vector<zmq::message_t> out;
      for (const std::string& f : frames) out.emplace_back(f.data(), f.size());
      zmq::send_multipart(pub, out);
      Result<std::optional<v1::MaskResult>> r = (*sub)->Receive(milliseconds(20));
      if (!r.ok() && r.status().message().find(frames[0]) != std::string::npos) return r.status();
      EXPECT_TRUE(!r.ok() || !r->has_value());
    }
    return Status::Ok();
  };
  Status unparsable = first_error({"mask.ds.bad", "\xff\xff\xff"});
  EXPECT_EQ(unparsable.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unparsable.message().find("mask.ds.bad"), std::string::npos) << unparsable.message();

  Status three = first_error({"mask.ds.three", "", ""});
  EXPECT_EQ(three.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(three.message().find("mask.ds.three"), std::string::npos) << three.message();
}

}  // namespace
}  // namespace clickdiff
