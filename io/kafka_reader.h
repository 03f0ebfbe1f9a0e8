// io/kafka_reader.h — reads a topic's partitions from given offsets to their end, outside any
// consumer group: how a producer finds which of the records it owed were delivered before a crash
// (io/outbox.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff {

// Not thread-safe. Commits nothing and joins no group (the group id it needs for assign is its
// own and never used for offsets).
class KafkaReader {
 public:
  // Connects to config.bootstrap_servers unless `bootstrap_override` is non-empty, with
  // config.properties (security, SASL, SSL...). Errors as KafkaProducer::Create's.
  static Result<std::unique_ptr<KafkaReader>> Create(const KafkaConfig& config,
                                                     const std::string& bootstrap_override = "");
  ~KafkaReader();
  KafkaReader(const KafkaReader&) = delete;
  KafkaReader& operator=(const KafkaReader&) = delete;

  using Visit = std::function<void(int32_t partition, int64_t offset, std::string_view key,
                                   std::string_view value)>;
  // Visits every record of every partition of `topic`, from `from[partition]` (a partition not
  // in `from`, or whose `from` is beyond its end and so belongs to another log: from its first
  // record) up to the partition's end when Read started, in offset order within a partition. A
  // topic that does not exist has nothing to read. Errors: InvalidArgument for a topic name
  // librdkafka refuses; Unavailable when the cluster did not answer, or not every partition was
  // read to its end, within `timeout` (what was read by then has been visited).
  Status Read(const std::string& topic, const std::map<int32_t, int64_t>& from, const Visit& visit,
              std::chrono::milliseconds timeout);

 private:
  struct Impl;
  explicit KafkaReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clickdiff
