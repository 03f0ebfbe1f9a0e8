// services/daemon.h — clickdiffd: wires the outside adapters (Kafka, RocksDB, ZeroMQ, the model)
// into the flow graph and runs until asked to stop. This is the composition root; each piece it
// connects is tested on its own (io/, nodes/, graph/).
#pragma once

#include <atomic>
#include <functional>

#include "base/status.h"
#include "config/config.h"
#include "services/runtime_file.h"

namespace clickdiff {

// The topics the service reads and writes, dead-letter topics included.
std::vector<std::string> ServiceTopics(const KafkaConfig& kafka);

// Runs the service until `stop` becomes true. In mode "embedded" it starts its own Kafka-protocol
// broker (librdkafka's mock cluster) and creates the topics; in "external" it uses
// kafka.bootstrap_servers. Then it runs until `stop`, then stops intake, drains the graph, stores
// offsets, closes consumer and producer, flushes and closes RocksDB. `on_ready` (optional) is
// called once every socket is bound and the consumer has started. Errors: any component failing to
// start (naming it); a fatal Kafka error while running.
Status RunDaemon(const Config& config, const std::atomic<bool>& stop,
                 const std::function<void(const ServiceEndpoints&)>& on_ready = nullptr);

}  // namespace clickdiff
