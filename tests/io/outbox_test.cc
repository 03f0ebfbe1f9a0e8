// The outbox against a real RocksDB and the embedded broker: a record is delivered once whatever
// happens between the write that holds it and the outbox's delete after the acknowledgement.
#include "io/outbox.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "io/embedded_broker.h"
#include "io/kafka_consumer.h"
#include "io/keys.h"

namespace clickdiff {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class OutboxTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("clickdiff_outbox_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    config_.path = (dir_ / "db").string();
    store_ = Store::Open(config_).value();
    broker_ = EmbeddedBroker::Start(1).value();
    ASSERT_TRUE(broker_->CreateTopic("letters", 1).ok());
    producer_ = KafkaProducer::Create(KafkaConfig{}, broker_->bootstrap_servers()).value();
  }
  void TearDown() override {
    producer_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // Writes one record through `outbox` (its batch also stores an offset, as intake's does).
  void PutAndWrite(Outbox& outbox, const std::string& value) {
    Store::Batch batch;
    outbox.Put(batch, "letters", "k", value);
    batch.SetOffset("source", 0, 7);
    ASSERT_TRUE(store_->Write(batch).ok());
  }
  // Pumps until nothing is pending (or 30 s pass).
  bool Drain(Outbox& outbox) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) {
      EXPECT_TRUE(outbox.Pump().ok());
      if (outbox.pending() == 0) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
  // The values on topic "letters", read from the beginning until `count` came (or 30 s).
  std::vector<std::string> Read(size_t count) {
    std::mutex mu;
    std::vector<std::string> values;
    KafkaConsumer::Callbacks callbacks;
    callbacks.stored_offset = [](const std::string&, int32_t) {
      return Result<std::optional<int64_t>>(std::optional<int64_t>());
    };
    callbacks.on_message = [&](KafkaMessage m) {
      std::lock_guard<std::mutex> lock(mu);
      values.push_back(m.value);
    };
    KafkaConfig reader;
    reader.group_id = "reader-" + std::to_string(++readers_);
    reader.instance_id = "";
    auto consumer =
        KafkaConsumer::Create(reader, {"letters"}, callbacks, broker_->bootstrap_servers()).value();
    EXPECT_TRUE(consumer->Start().ok());
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < end) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (values.size() >= count) break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    std::this_thread::sleep_for(milliseconds(300));  // anything beyond `count` shows up too
    consumer->Stop();
    std::lock_guard<std::mutex> lock(mu);
    return values;
  }
  uint64_t Stored() const {
    return store_->Count(Family::kMetadata, keys::OutboxPrefix("")).value();
  }

  fs::path dir_;
  StoreConfig config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EmbeddedBroker> broker_;
  std::unique_ptr<KafkaProducer> producer_;
  int readers_ = 0;
};

TEST_F(OutboxTest, ARecordWrittenButNeverSentIsSentByTheNextRun) {
  {
    // The process dies right after the write that holds the record: nothing was produced.
    auto outbox = Outbox::Open(store_.get(), producer_.get(), "test").value();
    PutAndWrite(*outbox, "first");
    EXPECT_EQ(outbox->pending(), 1u);
  }
  EXPECT_EQ(Stored(), 1u);
  auto next_run = Outbox::Open(store_.get(), producer_.get(), "test").value();
  EXPECT_EQ(next_run->pending(), 1u);
  PutAndWrite(*next_run, "second");  // numbered after what was left
  ASSERT_TRUE(Drain(*next_run));
  EXPECT_EQ(Stored(), 0u) << "acknowledged records are deleted";
  EXPECT_EQ(Read(2), (std::vector<std::string>{"first", "second"}));
}

TEST_F(OutboxTest, RecordsDeliveredButNotYetDeletedWhenTheProcessDiedAreNotSentAgain) {
  {
    auto outbox = Outbox::Open(store_.get(), producer_.get(), "test").value();
    PutAndWrite(*outbox, "a1");
    ASSERT_TRUE(Drain(*outbox));  // acknowledged and deleted: the partition's position is noted
    PutAndWrite(*outbox, "a2");
    PutAndWrite(*outbox, "a3");
    ASSERT_TRUE(outbox->Pump().ok());
    ASSERT_TRUE(producer_->Flush(std::chrono::seconds(30)).ok());
    // The process dies after the broker acknowledged a2 and a3, before the outbox deleted them;
    // and after writing a record equal to a1 (delivered before the noted position), not sent.
    PutAndWrite(*outbox, "a1");
  }
  EXPECT_EQ(Stored(), 3u);
  {
    auto next_run = Outbox::Open(store_.get(), producer_.get(), "test").value();
    EXPECT_EQ(next_run->pending(), 1u) << "a2 and a3 were found in the topic";
    EXPECT_EQ(Stored(), 1u);
    // It dies too, after writing a record equal to a2, found by the read-back: the next run must
    // not take it for the one in the topic.
    PutAndWrite(*next_run, "a2");
  }
  auto third_run = Outbox::Open(store_.get(), producer_.get(), "test").value();
  EXPECT_EQ(third_run->pending(), 2u);
  ASSERT_TRUE(Drain(*third_run));
  EXPECT_EQ(Read(5), (std::vector<std::string>{"a1", "a2", "a3", "a1", "a2"}));
}

TEST_F(OutboxTest, ARefusedRecordIsKeptAndSentAgainUntilTheBrokerTakesIt) {
  auto outbox = Outbox::Open(store_.get(), producer_.get(), "test", milliseconds(100)).value();
  broker_->RefuseProduces(3);
  PutAndWrite(*outbox, "letter");
  ASSERT_TRUE(outbox->Pump().ok());
  ASSERT_TRUE(Drain(*outbox)) << "still pending after the broker took produce requests again";
  EXPECT_EQ(Stored(), 0u);
  EXPECT_GE(producer_->failed(), 1u) << "the broker refused it first";
  EXPECT_EQ(Read(1), (std::vector<std::string>{"letter"}));
}

TEST_F(OutboxTest, ARecordWhoseBatchWasNeverWrittenIsNotSent) {
  // The write that should have held it failed (the caller's state change did not happen either):
  // nothing is owed, so nothing goes out.
  auto outbox = Outbox::Open(store_.get(), producer_.get(), "test").value();
  Store::Batch lost;
  outbox->Put(lost, "letters", "k", "phantom");
  EXPECT_EQ(outbox->pending(), 1u);
  PutAndWrite(*outbox, "real");
  ASSERT_TRUE(Drain(*outbox));
  EXPECT_EQ(Read(1), (std::vector<std::string>{"real"}));
}

TEST_F(OutboxTest, SettleAfterTheLastFlushLeavesNothingToSendAgain) {
  // At stop: the producer's last flush delivers what was in flight; Settle deletes it without
  // producing anything, so the next run has nothing to send again.
  auto outbox = Outbox::Open(store_.get(), producer_.get(), "test").value();
  PutAndWrite(*outbox, "last");
  ASSERT_TRUE(outbox->Pump().ok());
  ASSERT_TRUE(producer_->Flush(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(outbox->Settle().ok());
  EXPECT_EQ(outbox->pending(), 0u);
  EXPECT_EQ(Stored(), 0u);
  EXPECT_EQ(Outbox::Open(store_.get(), producer_.get(), "test").value()->pending(), 0u);
}

TEST_F(OutboxTest, AGarbledStoredRecordIsDroppedNotSent) {
  Store::Batch batch;
  batch.Put(Family::kMetadata, keys::OutboxKey("test", 4), "not a record");
  ASSERT_TRUE(store_->Write(batch).ok());
  auto outbox = Outbox::Open(store_.get(), producer_.get(), "test").value();
  EXPECT_EQ(outbox->pending(), 0u);
  EXPECT_EQ(Stored(), 0u);
}

}  // namespace
}  // namespace clickdiff
