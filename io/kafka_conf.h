// io/kafka_conf.h — internal to io/: RAII owners for librdkafka's C handles and the one place
// that turns a KafkaConfig into an rd_kafka_conf_t, shared by KafkaProducer, KafkaConsumer and
// EmbeddedBroker. Not part of the module's public API (it exposes librdkafka types).
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "config/config.h"

namespace clickdiff::kafka_internal {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const {
    rd_kafka_topic_partition_list_destroy(list);
  }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* message) const { rd_kafka_message_destroy(message); }
};
struct ErrorDeleter {
  void operator()(rd_kafka_error_t* error) const { rd_kafka_error_destroy(error); }
};

using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;

using Properties = std::vector<std::pair<std::string, std::string>>;

// What a client sets around the user's properties.
struct ConfSpec {
  const char* client_kind;  // "producer" / "consumer", for messages
  Properties defaults;      // set before config.properties: the user may override them
  Properties managed;       // set after them; config.properties naming one of these is an error
};

// Returns a configuration with librdkafka's log routed to spdlog and, in order: spec.defaults,
// client.id = config.client_id, bootstrap.servers = `bootstrap_override` if non-empty else
// config.bootstrap_servers, config.properties verbatim and those of config.property_files (read
// now; NotFound naming the key and the file when one cannot be read, InvalidArgument for one over
// 64 KiB), spec.managed.
// Errors (InvalidArgument, naming the property): no bootstrap servers at all; a property
// librdkafka rejects (unknown name, bad value); a property in config.properties or
// config.property_files that this class manages itself (bootstrap.servers, client.id and
// spec.managed's keys), since silently overriding either side would break the contract the class
// documents.
Result<ConfPtr> BuildConf(const KafkaConfig& config, const std::string& bootstrap_override,
                          const ConfSpec& spec);

// Creates a client handle from `conf`, which librdkafka owns from then on. InvalidArgument with
// librdkafka's reason (e.g. conflicting properties) when it refuses.
Result<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf);

// A bare configuration with only the spdlog log route (for handles that talk to no cluster).
ConfPtr NewLoggingConf();

// Sets one property; InvalidArgument naming it when librdkafka refuses.
Status SetProperty(rd_kafka_conf_t* conf, const std::string& name, const std::string& value);

// "<topic> [<partition>]" as librdkafka writes it in logs.
std::string TopicPartitionName(const std::string& topic, int32_t partition);

// The message of a fatal error raised on `rk` ("<error name>: <reason>").
std::string FatalErrorMessage(rd_kafka_t* rk);

}  // namespace clickdiff::kafka_internal
