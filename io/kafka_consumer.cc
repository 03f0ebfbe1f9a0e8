#include "io/kafka_consumer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/guard.h"
#include "io/kafka_conf.h"

namespace clickdiff {

using kafka_internal::ConfPtr;
using kafka_internal::ErrorPtr;
using kafka_internal::HandlePtr;
using kafka_internal::MessagePtr;
using kafka_internal::PartitionListPtr;
using kafka_internal::TopicPartitionName;

namespace {

constexpr std::string_view kAutoInstanceId = "auto";
// librdkafka's default is 45 s: the time a restart after kill -9 waits on a broker that does not
// know instance ids. Heartbeats at a tenth of it.
constexpr const char* kSessionTimeoutMs = "10000";
constexpr const char* kHeartbeatIntervalMs = "1000";
constexpr size_t kMaxInstanceIdLength = 249;  // as a topic name

// How long one rd_kafka_consumer_poll may block: bounds how late a Pause/Resume is applied to
// the partitions and how long Stop waits for the thread.
constexpr int kPollTimeoutMs = 50;

using TopicPartition = std::pair<std::string, int32_t>;

}  // namespace

struct KafkaConsumer::Impl {
  // Poll thread: applies pause/resume requests, polls, hands records over.
  void PollLoop() {
    poll_thread_id.store(std::this_thread::get_id());
    while (!stop.load()) {
      ApplyPauseRequest();
      if (!held.empty() && !pause_requested.load()) {
        DeliverHeld();
        continue;
      }
      if (!ends_held.empty() && !pause_requested.load()) ReportHeldEnds();
      MessagePtr message(rd_kafka_consumer_poll(handle.get(), kPollTimeoutMs));
      if (message == nullptr) {
        idle_polls.fetch_add(1);
        continue;
      }
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        HandleMessageError(*message);
      } else if (pause_requested.load()) {
        // Polled after Pause() but before the pause reached librdkafka. librdkafka counts it as
        // consumed (it resumes fetching after it), so it is kept here and handed over first
        // after Resume.
        held.push_back(std::move(message));
      } else {
        Deliver(*message);
      }
    }
  }

  // Pausing a partition makes librdkafka discard what it had prefetched for it (a version
  // barrier); on resume it fetches again from the offset after the last record
  // rd_kafka_consumer_poll returned. Records this thread polled but held back are handed over
  // before polling again, so the sequence on_message sees has no gap and no repeat.
  void ApplyPauseRequest() {
    const bool want_paused = pause_requested.load();
    if (want_paused == paused_applied) return;
    PartitionListPtr list = AssignmentList();
    const rd_kafka_resp_err_t err = want_paused
                                        ? rd_kafka_pause_partitions(handle.get(), list.get())
                                        : rd_kafka_resume_partitions(handle.get(), list.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ReportError(Internal(std::string("kafka consumer: ") +
                           (want_paused ? "pausing" : "resuming") +
                           " partitions: " + rd_kafka_err2str(err)));
    }
    paused_applied = want_paused;
    if (!want_paused) NudgeFetcher(list.get());
  }

  // librdkafka 2.0 handles a resume on its main thread without waking the broker thread that
  // fetches the partition, so fetching restarts only at that thread's next ~1 s wakeup. A seek
  // is queued to the broker thread and wakes it; seeking to the position librdkafka resumes at
  // anyway (the offset after the last record poll returned, or the assigned start offset)
  // changes nothing else.
  void NudgeFetcher(rd_kafka_topic_partition_list_t* list) {
    if (rd_kafka_position(handle.get(), list) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    PartitionListPtr seek(rd_kafka_topic_partition_list_new(list->cnt));
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& p = list->elems[i];
      int64_t offset = p.offset;
      // Nothing polled from it yet: librdkafka starts at the assigned offset (a logical one, like
      // "beginning", would cost an offset lookup: leave those alone).
      if (offset < 0) {
        auto it = next_offset.find(TopicPartition(p.topic, p.partition));
        if (it == next_offset.end() || it->second < 0) continue;
        offset = it->second;
      }
      rd_kafka_topic_partition_list_add(seek.get(), p.topic, p.partition)->offset = offset;
    }
    if (seek->cnt == 0) return;
    ErrorPtr error(rd_kafka_seek_partitions(handle.get(), seek.get(), /*timeout_ms=*/0));
    if (error != nullptr) {
      spdlog::debug("kafka consumer: seek after resume: {}", rd_kafka_error_string(error.get()));
    }
  }

  void DeliverHeld() {
    while (!held.empty() && !pause_requested.load() && !stop.load()) {
      MessagePtr message = std::move(held.front());
      held.pop_front();
      Deliver(*message);
    }
    if (held.empty() && !pause_requested.load()) ReportHeldEnds();
  }

  void ReportEnd(const TopicPartition& end) {
    Status told =
        Guarded("kafka consumer: on_end for " + TopicPartitionName(end.first, end.second), [&] {
          callbacks.on_end(end.first, end.second);
          return Status::Ok();
        });
    if (!told.ok()) ReportError(told);
  }

  void ReportHeldEnds() {
    std::vector<TopicPartition> ends;
    ends.swap(ends_held);
    for (const TopicPartition& end : ends) ReportEnd(end);
  }

  // The current assignment.
  PartitionListPtr AssignmentList() const {
    PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(next_offset.size())));
    for (const auto& [tp, offset] : next_offset) {
      rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second);
    }
    return list;
  }

  void Deliver(const rd_kafka_message_t& m) {
    const std::string topic = rd_kafka_topic_name(m.rkt);
    auto it = next_offset.find(TopicPartition(topic, m.partition));
    if (it == next_offset.end()) {
      // librdkafka's version barriers should make this impossible; the partition's new owner
      // starts at the stored offsets anyway.
      spdlog::debug("kafka consumer: dropping a record of unassigned partition {}",
                    TopicPartitionName(topic, m.partition));
      return;
    }
    // Going back means librdkafka reset the position (auto.offset.reset after an out-of-range
    // stored offset, e.g. a recreated topic). The record is still handed over: the caller's keys
    // are idempotent, and dropping it silently could lose data.
    if (it->second >= 0 && m.offset < it->second) {
      spdlog::warn("kafka consumer: {} went back from offset {} to {}",
                   TopicPartitionName(topic, m.partition), it->second, m.offset);
    }
    // Going forward past the position means the records between were never read: the broker
    // no longer held them (its retention deleted them first) or they were transaction markers.
    // Nothing can get them back; they are counted and said, not passed over silently.
    if (it->second >= 0 && m.offset > it->second) {
      const int64_t gap = m.offset - it->second;
      skipped.fetch_add(static_cast<uint64_t>(gap));
      if (gap > 1) {
        spdlog::error(
            "kafka consumer: {} jumped from offset {} to {}: {} records were never read (the "
            "broker had deleted them, e.g. by retention, before this consumer reached them)",
            TopicPartitionName(topic, m.partition), it->second, m.offset, gap);
      }
    }
    it->second = m.offset + 1;
    // A record after a held-back end: the partition is no longer at it.
    ends_held.erase(std::remove(ends_held.begin(), ends_held.end(), it->first), ends_held.end());

    KafkaMessage message;
    message.topic = topic;
    message.partition = m.partition;
    message.offset = m.offset;
    if (m.key != nullptr) message.key.assign(static_cast<const char*>(m.key), m.key_len);
    if (m.payload != nullptr) {
      message.value.assign(static_cast<const char*>(m.payload), m.len);
    }
    const int64_t timestamp = rd_kafka_message_timestamp(&m, nullptr);
    message.timestamp_ms = timestamp >= 0 ? timestamp : 0;
    received.fetch_add(1);
    Status handed =
        Guarded("kafka consumer: on_message for " + TopicPartitionName(topic, m.partition) +
                    " offset " + std::to_string(m.offset),
                [&] {
                  callbacks.on_message(std::move(message));
                  return Status::Ok();
                });
    // A record on_message could not take must not be passed over (the caller would store later
    // offsets): consuming stops, and a restart reads it again.
    if (!handed.ok()) ReportFatal(handed);
  }

  void HandleMessageError(const rd_kafka_message_t& m) {
    if (m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (!callbacks.on_end || m.rkt == nullptr) return;
      TopicPartition end(rd_kafka_topic_name(m.rkt), m.partition);
      // Records held back by a pause come before it for the caller, and librdkafka reports an end
      // only once: told after they are handed over.
      if (!held.empty() || pause_requested.load()) {
        if (std::find(ends_held.begin(), ends_held.end(), end) == ends_held.end()) {
          ends_held.push_back(std::move(end));
        }
        return;
      }
      ReportEnd(end);
      return;
    }
    if (m.err == RD_KAFKA_RESP_ERR__FATAL) {
      ReportFatal(Internal("kafka consumer: fatal error: " +
                           kafka_internal::FatalErrorMessage(handle.get())));
      return;
    }
    std::string where;
    if (m.rkt != nullptr) {
      where = TopicPartitionName(rd_kafka_topic_name(m.rkt), m.partition) + ": ";
    }
    ReportError(Unavailable("kafka consumer: " + where + rd_kafka_message_errstr(&m)));
  }

  void ReportError(const Status& error) {
    if (callbacks.on_error) {
      callbacks.on_error(error);
    } else {
      spdlog::warn("{}", error.ToString());
    }
  }

  // Stops the poll loop; Stop() still has to be called to close the consumer.
  void ReportFatal(const Status& error) {
    stop.store(true);
    if (callbacks.on_error) {
      callbacks.on_error(error);
    } else {
      spdlog::error("{}", error.ToString());
    }
  }

  // Eager rebalance: an assignment replaces the previous one wholesale.
  void Rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions) {
    // Held records belong to the old assignment: whoever gets their partitions next starts at
    // the caller's stored offsets, which these records never reached.
    held.clear();
    ends_held.clear();
    next_offset.clear();
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        ReportError(
            Unavailable(std::string("kafka consumer: rebalance failed: ") + rd_kafka_err2str(err)));
      }
      rd_kafka_assign(handle.get(), nullptr);
      return;
    }
    for (int i = 0; i < partitions->cnt; ++i) {
      rd_kafka_topic_partition_t& p = partitions->elems[i];
      Result<std::optional<int64_t>> stored = StoredOffset(p.topic, p.partition);
      if (!stored.ok()) {
        next_offset.clear();
        rd_kafka_assign(handle.get(), nullptr);
        ReportFatal(stored.status());
        return;
      }
      p.offset = stored->value_or(RD_KAFKA_OFFSET_BEGINNING);
      next_offset[TopicPartition(p.topic, p.partition)] = p.offset;
    }
    const rd_kafka_resp_err_t assign_err = rd_kafka_assign(handle.get(), partitions);
    if (assign_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      next_offset.clear();
      ReportFatal(Internal(std::string("kafka consumer: assigning partitions: ") +
                           rd_kafka_err2str(assign_err)));
      return;
    }
    // A consumer that is paused stays paused across a rebalance.
    if (paused_applied) rd_kafka_pause_partitions(handle.get(), partitions);
    for (int i = 0; i < partitions->cnt; ++i) {
      const rd_kafka_topic_partition_t& p = partitions->elems[i];
      spdlog::info("kafka consumer: assigned {} from {}", TopicPartitionName(p.topic, p.partition),
                   p.offset == RD_KAFKA_OFFSET_BEGINNING ? std::string("the beginning")
                                                         : "offset " + std::to_string(p.offset));
    }
  }

  Result<std::optional<int64_t>> StoredOffset(const std::string& topic, int32_t partition) {
    const std::string where =
        "kafka consumer: stored offset of " + TopicPartitionName(topic, partition);
    return Guarded(where, [&]() -> Result<std::optional<int64_t>> {
      Result<std::optional<int64_t>> stored = callbacks.stored_offset(topic, partition);
      if (!stored.ok()) return stored.status().WithContext(where);
      if (stored->has_value() && **stored < 0) {
        return InvalidArgument(where + " is negative: " + std::to_string(**stored));
      }
      return stored;
    });
  }

  static void OnRebalance(rd_kafka_t* /*rk*/, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    static_cast<Impl*>(opaque)->Rebalance(err, partitions);
  }

  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      self->ReportFatal(
          Internal("kafka consumer: fatal error: " + kafka_internal::FatalErrorMessage(rk)));
    } else {
      self->ReportError(Unavailable(std::string("kafka consumer: ") +
                                    rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)) +
                                    ": " + reason));
    }
  }

  Callbacks callbacks;
  std::vector<std::string> topics;
  HandlePtr handle;  // reset by Stop() after rd_kafka_consumer_close

  std::mutex lifecycle_mu;  // serializes Start/Stop
  bool started = false;     // GUARDED_BY(lifecycle_mu)
  bool stopped = false;     // GUARDED_BY(lifecycle_mu)
  std::thread poller;       // GUARDED_BY(lifecycle_mu); runs PollLoop

  std::atomic<std::thread::id> poll_thread_id{std::thread::id()};  // for Stop() in a callback
  std::atomic<bool> stop{false};
  std::atomic<bool> pause_requested{false};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> skipped{0};
  std::atomic<uint64_t> idle_polls{0};

  // Owned by the poll thread (librdkafka runs the rebalance callback inside consumer_poll), and
  // by Stop() once that thread is joined (consumer_close runs the final revoke).
  bool paused_applied = false;  // the assignment is paused in librdkafka
  // Records polled while a pause was pending, handed over (in order) after Resume.
  std::deque<MessagePtr> held;
  // Ends of partitions reported while records were held back (poll thread only).
  std::vector<TopicPartition> ends_held;
  // Assigned partitions -> the offset after the last record handed over (or the assigned start,
  // possibly RD_KAFKA_OFFSET_BEGINNING, before the first).
  std::map<TopicPartition, int64_t> next_offset;
};

Result<std::unique_ptr<KafkaConsumer>> KafkaConsumer::Create(
    const KafkaConfig& config, const std::vector<std::string>& topics, Callbacks callbacks,
    const std::string& bootstrap_override) {
  if (topics.empty()) return InvalidArgument("kafka consumer: no topics to subscribe to");
  for (const std::string& topic : topics) {
    if (topic.empty()) return InvalidArgument("kafka consumer: a topic name is empty");
  }
  if (config.group_id.empty()) return InvalidArgument("kafka consumer: kafka.group_id is empty");
  if (config.instance_id == kAutoInstanceId) {
    return InvalidArgument(
        "kafka consumer: kafka.instance_id is still 'auto' (ResolveInstanceId names the instance)");
  }
  if (config.properties.count("group.instance.id") != 0 ||
      config.property_files.count("group.instance.id") != 0) {
    return InvalidArgument(
        "kafka consumer: group.instance.id in kafka.properties or kafka.property_files: the "
        "consumer sets it from kafka.instance_id");
  }
  if (!callbacks.stored_offset) {
    return InvalidArgument("kafka consumer: callbacks.stored_offset is not set");
  }
  if (!callbacks.on_message) {
    return InvalidArgument("kafka consumer: callbacks.on_message is not set");
  }

  kafka_internal::ConfSpec spec;
  spec.client_kind = "consumer";
  spec.defaults = {{"auto.offset.reset", "earliest"},
                   {"session.timeout.ms", kSessionTimeoutMs},
                   {"heartbeat.interval.ms", kHeartbeatIntervalMs}};
  // The offsets the caller stored are the truth: librdkafka must neither commit nor store on its
  // own, and the rebalance callback below implements the eager protocol.
  spec.managed = {{"group.id", config.group_id},
                  {"partition.assignment.strategy", "range"},
                  {"enable.auto.commit", "false"},
                  {"enable.auto.offset.store", "false"},
                  {"enable.partition.eof", "true"}};  // on_end
  if (!config.instance_id.empty())
    spec.managed.emplace_back("group.instance.id", config.instance_id);
  Result<ConfPtr> conf = kafka_internal::BuildConf(config, bootstrap_override, spec);
  if (!conf.ok()) return conf.status();

  auto impl = std::make_unique<Impl>();
  impl->callbacks = std::move(callbacks);
  impl->topics = topics;
  rd_kafka_conf_set_opaque(conf->get(), impl.get());
  rd_kafka_conf_set_rebalance_cb(conf->get(), &Impl::OnRebalance);
  rd_kafka_conf_set_error_cb(conf->get(), &Impl::OnError);
  Result<HandlePtr> handle = kafka_internal::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!handle.ok()) return handle.status().WithContext("kafka consumer");
  impl->handle = std::move(handle).value();
  // One queue for records, rebalances and errors: everything is served by consumer_poll.
  rd_kafka_poll_set_consumer(impl->handle.get());
  return std::unique_ptr<KafkaConsumer>(new KafkaConsumer(std::move(impl)));
}

std::string ResolveInstanceId(const Config& config, std::string_view store_identity) {
  if (config.kafka.instance_id != kAutoInstanceId) return config.kafka.instance_id;
  if (config.mode == Mode::kEmbedded) return "";
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  // The store's identity is what keeps two instances apart: it stays whole, the rest is cut.
  const std::string tail = "-" + std::string(store_identity).substr(0, kMaxInstanceIdLength / 2);
  std::string id =
      (config.kafka.client_id + "-" + host.data()).substr(0, kMaxInstanceIdLength - tail.size()) +
      tail;
  for (char& c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  return id;
}

KafkaConsumer::KafkaConsumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaConsumer::~KafkaConsumer() { Stop(); }

Status KafkaConsumer::Start() {
  std::lock_guard<std::mutex> lock(impl_->lifecycle_mu);
  if (impl_->stopped) return FailedPrecondition("kafka consumer: already stopped");
  if (impl_->started) return FailedPrecondition("kafka consumer: already started");
  PartitionListPtr subscription(
      rd_kafka_topic_partition_list_new(static_cast<int>(impl_->topics.size())));
  for (const std::string& topic : impl_->topics) {
    rd_kafka_topic_partition_list_add(subscription.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  const rd_kafka_resp_err_t err = rd_kafka_subscribe(impl_->handle.get(), subscription.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable(std::string("kafka consumer: subscribing: ") + rd_kafka_err2str(err));
  }
  impl_->started = true;
  impl_->poller = std::thread([raw = impl_.get()] { raw->PollLoop(); });
  return Status::Ok();
}

void KafkaConsumer::Pause() { impl_->pause_requested.store(true); }

void KafkaConsumer::Resume() { impl_->pause_requested.store(false); }

bool KafkaConsumer::paused() const { return impl_->pause_requested.load(); }

void KafkaConsumer::Stop() {
  if (std::this_thread::get_id() == impl_->poll_thread_id.load()) {
    // Called from a callback: the thread cannot join itself. End the loop; the destructor (or a
    // later Stop from another thread) joins and closes.
    impl_->stop.store(true);
    return;
  }
  std::lock_guard<std::mutex> lock(impl_->lifecycle_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stop.store(true);
  if (impl_->poller.joinable()) impl_->poller.join();
  impl_->held.clear();  // before the handle goes: messages hold references into it
  if (impl_->handle != nullptr) {
    // Leaves the group (the revoke runs the rebalance callback on this thread).
    const rd_kafka_resp_err_t err = rd_kafka_consumer_close(impl_->handle.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::warn("kafka consumer: closing: {}", rd_kafka_err2str(err));
    }
    impl_->handle.reset();
  }
}

uint64_t KafkaConsumer::received() const { return impl_->received.load(); }
uint64_t KafkaConsumer::skipped() const { return impl_->skipped.load(); }

std::string KafkaConsumer::cluster_id(std::chrono::milliseconds timeout) const {
  char* id = rd_kafka_clusterid(impl_->handle.get(), static_cast<int>(timeout.count()));
  if (id == nullptr) return "";
  std::string copy(id);
  rd_kafka_mem_free(impl_->handle.get(), id);
  return copy;
}

uint64_t KafkaConsumer::idle_polls() const { return impl_->idle_polls.load(); }

}  // namespace clickdiff
