#include "io/outbox.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/decimal.h"
#include "io/keys.h"

namespace clickdiff {

// Delivery reports, handed from the producer's thread to the next Pump.
struct Outbox::Acks {
  std::mutex mu;
  std::vector<std::pair<std::string, KafkaProducer::Landed>> delivered;  // GUARDED_BY(mu)
  std::vector<std::pair<std::string, Status>> failed;                    // GUARDED_BY(mu)
};

namespace {

// The acknowledged positions outbox `name` noted (keys::OutboxAcked); unreadable ones are skipped
// (their partitions are then read from their start).
Result<std::map<std::pair<std::string, int32_t>, int64_t>> ReadAcked(const Store& store,
                                                                     const std::string& name) {
  const std::string prefix = keys::OutboxAckedPrefix(name);
  std::map<std::pair<std::string, int32_t>, int64_t> acked;
  Status scanned =
      store.Scan(Family::kMetadata, prefix, [&](std::string_view key, std::string_view value) {
        const std::string_view rest = key.substr(prefix.size());
        const size_t split = rest.rfind('\0');
        const std::optional<uint32_t> partition =
            split == std::string_view::npos ? std::nullopt
                                            : ParseDecimal<uint32_t>(rest.substr(split + 1));
        const std::optional<int64_t> offset = ParseDecimal<int64_t>(value);
        if (partition && offset) {
          acked[{std::string(rest.substr(0, split)), static_cast<int32_t>(*partition)}] = *offset;
        }
        return true;
      });
  if (!scanned.ok()) return scanned;
  return acked;
}

}  // namespace

Result<size_t> Outbox::DropDelivered(Store* store, KafkaProducer* producer, const std::string& name,
                                     Acked& acked, std::map<std::string, Entry>& left) {
  // Per topic, the records left by key and value (several may be equal: each found once).
  std::map<std::string, std::multimap<std::pair<std::string, std::string>, std::string>> owed;
  for (const auto& [key, entry] : left) {
    owed[entry.record.topic()].emplace(std::make_pair(entry.record.key(), entry.record.value()),
                                       key);
  }
  Result<std::unique_ptr<KafkaReader>> reader = producer->NewReader();
  if (!reader.ok()) return reader.status();
  std::vector<std::string> delivered;
  Acked found;  // per partition, the offset after the last record found
  for (auto& topic_records : owed) {
    const std::string& topic = topic_records.first;
    auto& records = topic_records.second;  // a lambda cannot capture a structured binding
    std::map<int32_t, int64_t> from;
    for (const auto& [where, offset] : acked) {
      if (where.first == topic) from[where.second] = offset;
    }
    CLICKDIFF_RETURN_IF_ERROR((*reader)->Read(
        topic, from,
        [&](int32_t partition, int64_t offset, std::string_view key, std::string_view value) {
          auto match = records.find({std::string(key), std::string(value)});
          if (match == records.end()) return;
          delivered.push_back(match->second);
          records.erase(match);
          found[{topic, partition}] = offset + 1;  // in offset order: the last is the highest
        },
        kReadBackTimeout));
  }
  if (delivered.empty()) return size_t{0};
  // The noted positions move past what was found, so that a record written later with the same
  // key and value is not taken for one of these.
  Store::Batch batch;
  for (const std::string& key : delivered) batch.Delete(Family::kMetadata, key);
  for (const auto& [where, next] : found) {
    batch.Put(Family::kMetadata, keys::OutboxAcked(name, where.first, where.second),
              std::to_string(next));
  }
  CLICKDIFF_RETURN_IF_ERROR(store->Write(batch));
  for (const std::string& key : delivered) left.erase(key);
  for (const auto& [where, next] : found) acked[where] = next;
  return delivered.size();
}

Result<std::unique_ptr<Outbox>> Outbox::Open(Store* store, KafkaProducer* producer,
                                             const std::string& name,
                                             std::chrono::milliseconds retry_after) {
  if (name.empty()) return InvalidArgument("outbox: a name is required");
  const std::string prefix = keys::OutboxPrefix(name);
  std::map<std::string, Entry> left;
  uint64_t next = 1;
  std::vector<std::string> garbled;
  Status scanned =
      store->Scan(Family::kMetadata, prefix, [&](std::string_view key, std::string_view value) {
        const std::optional<uint64_t> sequence = ParseDecimal<uint64_t>(key.substr(prefix.size()));
        Entry entry;
        if (!sequence ||
            !entry.record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          garbled.emplace_back(key);
          return true;
        }
        next = std::max(next, *sequence + 1);
        left.emplace(std::string(key), std::move(entry));
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned.WithContext("outbox " + name));
  if (!garbled.empty()) {
    spdlog::warn("outbox {}: dropping {} stored record(s) that do not parse", name, garbled.size());
    Store::Batch batch;
    for (const std::string& key : garbled) batch.Delete(Family::kMetadata, key);
    CLICKDIFF_RETURN_IF_ERROR(store->Write(batch).WithContext("outbox " + name));
  }
  Result<Acked> acked = ReadAcked(*store, name);
  CLICKDIFF_RETURN_IF_ERROR(acked.status().WithContext("outbox " + name));
  if (!left.empty()) {
    const size_t before = left.size();
    Result<size_t> dropped = DropDelivered(store, producer, name, *acked, left);
    if (!dropped.ok()) {
      spdlog::warn(
          "outbox {}: could not tell which of the {} record(s) a previous run left had been "
          "delivered ({}); sending them all (a reader may see some twice)",
          name, before, dropped.status().ToString());
    } else {
      spdlog::info(
          "outbox {}: {} record(s) a previous run left: {} had been delivered (deleted), "
          "sending {}",
          name, before, *dropped, left.size());
    }
  }
  return std::unique_ptr<Outbox>(new Outbox(store, producer, name, std::move(left), next,
                                            retry_after, std::move(acked).value()));
}

Outbox::Outbox(Store* store, KafkaProducer* producer, std::string name,
               std::map<std::string, Entry> left, uint64_t next,
               std::chrono::milliseconds retry_after, Acked acked)
    : store_(store),
      producer_(producer),
      name_(std::move(name)),
      acks_(std::make_shared<Acks>()),
      unsent_(std::move(left)),
      next_(next),
      retry_after_(retry_after),
      acked_(std::move(acked)) {
  pending_.store(unsent_.size());
}

Outbox::~Outbox() = default;

void Outbox::Put(Store::Batch& batch, const std::string& topic, const std::string& key,
                 const std::string& value) {
  const std::string stored_key = keys::OutboxKey(name_, next_++);
  Entry entry;
  entry.record.set_topic(topic);
  entry.record.set_key(key);
  entry.record.set_value(value);
  entry.record.set_created_ms(NowMs());
  batch.Put(Family::kMetadata, stored_key, entry.record.SerializeAsString());
  staged_.emplace(stored_key, std::move(entry));
  pending_.fetch_add(1);
}

Status Outbox::Settle() {
  std::vector<std::pair<std::string, KafkaProducer::Landed>> delivered;
  std::vector<std::pair<std::string, Status>> failed;
  {
    std::lock_guard<std::mutex> lock(acks_->mu);
    delivered.swap(acks_->delivered);
    failed.swap(acks_->failed);
  }
  if (!delivered.empty()) {
    Store::Batch batch;
    Acked acked = acked_;
    for (const auto& [key, at] : delivered) {
      batch.Delete(Family::kMetadata, key);
      auto entry = in_flight_.find(key);
      if (entry == in_flight_.end() || at.offset < 0) continue;
      // A partition's acknowledgements come in offset order: the last is the position. (Not the
      // highest ever noted: a recreated topic or another cluster starts lower.)
      acked[{entry->second.record.topic(), at.partition}] = at.offset + 1;
    }
    for (const auto& [where, next] : acked) {
      auto was = acked_.find(where);
      if (was == acked_.end() || was->second != next) {
        batch.Put(Family::kMetadata, keys::OutboxAcked(name_, where.first, where.second),
                  std::to_string(next));
      }
    }
    if (Status deleted = store_->Write(batch); !deleted.ok()) {
      std::lock_guard<std::mutex> lock(acks_->mu);  // deleted next time
      acks_->delivered.insert(acks_->delivered.end(), delivered.begin(), delivered.end());
      acks_->failed.insert(acks_->failed.end(), failed.begin(), failed.end());
      return deleted.WithContext("outbox " + name_);
    }
    acked_ = std::move(acked);
    for (const auto& [key, at] : delivered) {
      if (in_flight_.erase(key) > 0) pending_.fetch_sub(1);
    }
  }
  const auto now = std::chrono::steady_clock::now();
  for (auto& [key, why] : failed) {
    auto it = in_flight_.find(key);
    if (it == in_flight_.end()) continue;
    spdlog::warn("outbox {}: a record for {} was not delivered ({}); trying again in {} ms", name_,
                 it->second.record.topic(), why.ToString(), retry_after_.count());
    it->second.not_before = now + retry_after_;
    unsent_.insert(in_flight_.extract(it));
  }
  return Status::Ok();
}

Status Outbox::Pump() {
  CLICKDIFF_RETURN_IF_ERROR(Settle());
  // The caller wrote what it put before this call; a record whose batch was not written (the
  // write failed) is not owed to anyone.
  for (auto it = staged_.begin(); it != staged_.end();) {
    Result<std::optional<std::string>> stored = store_->Get(Family::kMetadata, it->first);
    if (!stored.ok()) return stored.status().WithContext("outbox " + name_);
    if (!stored->has_value()) {
      it = staged_.erase(it);
      pending_.fetch_sub(1);
    } else {
      ++it;
    }
  }
  unsent_.merge(staged_);
  const auto now = std::chrono::steady_clock::now();
  for (auto it = unsent_.begin(); it != unsent_.end();) {
    if (it->second.not_before > now) {
      ++it;
      continue;
    }
    const v1::OutboxRecord& r = it->second.record;
    std::weak_ptr<Acks> acks = acks_;
    Status produced = producer_->Produce(
        r.topic(), r.key(), r.value(),
        [acks, key = it->first](const Status& delivery, const KafkaProducer::Landed& at) {
          std::shared_ptr<Acks> shared = acks.lock();
          if (!shared) return;  // the outbox is gone; the record stays stored for the next run
          std::lock_guard<std::mutex> lock(shared->mu);
          if (delivery.ok()) {
            shared->delivered.emplace_back(key, at);
          } else {
            shared->failed.emplace_back(key, delivery);
          }
        });
    if (produced.code() == StatusCode::kResourceExhausted) break;  // the rest next time
    if (!produced.ok()) {
      if (produced.code() == StatusCode::kInternal) return produced.WithContext("outbox " + name_);
      // Refused at once (e.g. too large for the topic): tried again later, like a failure.
      spdlog::warn("outbox {}: {}; trying again in {} ms", name_, produced.ToString(),
                   retry_after_.count());
      it->second.not_before = now + retry_after_;
      ++it;
      continue;
    }
    auto next = std::next(it);
    in_flight_.insert(unsent_.extract(it));
    it = next;
  }
  return Status::Ok();
}

size_t Outbox::pending() const { return pending_.load(); }

}  // namespace clickdiff
