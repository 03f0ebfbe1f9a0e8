#include "io/kafka_reader.h"

#include <algorithm>
#include <set>
#include <utility>

#include "io/kafka_conf.h"

namespace clickdiff {

using kafka_internal::ConfPtr;
using kafka_internal::HandlePtr;
using kafka_internal::MessagePtr;
using kafka_internal::PartitionListPtr;

namespace {

constexpr int kPollTimeoutMs = 100;

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* metadata) const {
    rd_kafka_metadata_destroy(metadata);
  }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* topic) const { rd_kafka_topic_destroy(topic); }
};

int MsLeft(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

}  // namespace

struct KafkaReader::Impl {
  HandlePtr handle;
};

Result<std::unique_ptr<KafkaReader>> KafkaReader::Create(const KafkaConfig& config,
                                                         const std::string& bootstrap_override) {
  kafka_internal::ConfSpec spec;
  spec.client_kind = "reader";
  // assign() needs a group id; nothing is committed or joined under it.
  spec.managed = {
      {"group.id", config.client_id + "-reader"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},  // a partition's end, past any gap
      // A start the broker no longer holds (retention): its first record, never the end.
      {"auto.offset.reset", "earliest"}};
  Result<ConfPtr> conf = kafka_internal::BuildConf(config, bootstrap_override, spec);
  if (!conf.ok()) return conf.status();
  Result<HandlePtr> handle = kafka_internal::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!handle.ok()) return handle.status().WithContext("kafka reader");
  auto impl = std::make_unique<Impl>();
  impl->handle = std::move(handle).value();
  rd_kafka_poll_set_consumer(impl->handle.get());
  return std::unique_ptr<KafkaReader>(new KafkaReader(std::move(impl)));
}

KafkaReader::KafkaReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaReader::~KafkaReader() {
  if (impl_ && impl_->handle) rd_kafka_consumer_close(impl_->handle.get());
}

Status KafkaReader::Read(const std::string& topic, const std::map<int32_t, int64_t>& from,
                         const Visit& visit, std::chrono::milliseconds timeout) {
  rd_kafka_t* rk = impl_->handle.get();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string what = "kafka reader: topic " + topic;
  std::unique_ptr<rd_kafka_topic_t, TopicDeleter> rkt(
      rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  if (!rkt) {
    return InvalidArgument(what + ": " + rd_kafka_err2str(rd_kafka_last_error()));
  }
  const rd_kafka_metadata_t* raw = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt.get(), &raw, MsLeft(deadline));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(what + ": no metadata: " + rd_kafka_err2str(err));
  }
  std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter> metadata(raw);
  if (metadata->topic_cnt < 1 ||
      metadata->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return Status::Ok();  // no such topic: nothing in it
  }
  if (metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(what + ": " + rd_kafka_err2str(metadata->topics[0].err));
  }
  // Where each partition starts and ends now.
  std::map<int32_t, int64_t> end;
  PartitionListPtr assignment(rd_kafka_topic_partition_list_new(metadata->topics[0].partition_cnt));
  for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
    const int32_t partition = metadata->topics[0].partitions[i].id;
    int64_t low = 0;
    int64_t high = 0;
    err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high,
                                           MsLeft(deadline));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Unavailable(what + " [" + std::to_string(partition) +
                         "]: no offsets: " + rd_kafka_err2str(err));
    }
    // A position beyond the end belongs to another log (a recreated topic, another cluster).
    const auto start = from.find(partition);
    const int64_t first =
        start == from.end() || start->second > high ? low : std::max(low, start->second);
    if (first >= high) continue;
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), partition)->offset = first;
    end[partition] = high;
  }
  if (end.empty()) return Status::Ok();
  err = rd_kafka_assign(rk, assignment.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(what + ": assign: " + rd_kafka_err2str(err));
  }
  std::set<int32_t> open;
  for (const auto& [partition, high] : end) open.insert(partition);
  std::string last_error;
  while (!open.empty() && MsLeft(deadline) > 0) {
    MessagePtr message(rd_kafka_consumer_poll(rk, std::min(kPollTimeoutMs, MsLeft(deadline))));
    if (!message) continue;
    // Records of an earlier Read's topic may still be queued.
    if (message->rkt == nullptr || topic != rd_kafka_topic_name(message->rkt)) continue;
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      open.erase(message->partition);
      continue;
    }
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {  // transient: retried by librdkafka
      last_error = rd_kafka_message_errstr(message.get());
      continue;
    }
    const int32_t partition = message->partition;
    auto high = end.find(partition);
    if (high == end.end()) continue;
    if (message->offset >= high->second) {  // past its end when Read started (a gap before it)
      open.erase(partition);
      continue;
    }
    visit(partition, message->offset,
          std::string_view(static_cast<const char*>(message->key), message->key_len),
          std::string_view(static_cast<const char*>(message->payload), message->len));
    if (message->offset + 1 >= high->second) open.erase(partition);
  }
  rd_kafka_assign(rk, nullptr);
  if (!open.empty()) {
    return Unavailable(what + ": " + std::to_string(open.size()) + " of " +
                       std::to_string(end.size()) + " partition(s) not read to their end within " +
                       std::to_string(timeout.count()) + " ms" +
                       (last_error.empty() ? "" : " (" + last_error + ")"));
  }
  return Status::Ok();
}

}  // namespace clickdiff
