// services/service.h — clickdiffd as one object: the composition root that connects the adapters
// (Kafka, RocksDB, ZeroMQ), the flow graph and the continuous trainer, and shuts them down in
// order.
//
// Start brings the parts up in dependency order: the store; the embedded broker (mode embedded)
// and its topics; the model versions (the newest stored one of this lineage, else the configured
// model); ZeroMQ; the producer; the trainer (built, not started); the graph; then the trainer's
// thread, the query handler, the consumer and the ticker. Stop takes them down in the reverse
// order: intake stops (consumer), the trainer finishes its run, the graph drains, the producer and
// the store flush. Members are declared in that dependency order, so the destructor agrees.
//
// Thread-safety: Start and Stop from one thread; endpoints and health from any thread. The
// objects it owns call each other from their own threads (consumer poll thread -> graph; intake
// -> trainer; trainer -> graph; ZeroMQ thread -> Answer); each such call is only possible while
// its target lives, by the order of Start and Stop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "graph/pipeline.h"
#include "io/embedded_broker.h"
#include "io/kafka_consumer.h"
#include "io/kafka_producer.h"
#include "io/store.h"
#include "io/zmq_server.h"
#include "learning/continuous_trainer.h"
#include "learning/model_slot.h"
#include "learning/version_store.h"
#include "nodes/mask_cache.h"
#include "services/runtime_file.h"

namespace clickdiff {

// The topics the service reads and writes, dead-letter topics included.
std::vector<std::string> ServiceTopics(const KafkaConfig& kafka);

class Service {
 public:
  // Starts every part (in mode embedded its own Kafka-protocol broker, with the topics) and
  // writes the runtime file (services/runtime_file.h). Returns once the consumer has started.
  // Errors: a part failed to start, named.
  static Result<std::unique_ptr<Service>> Start(const Config& config);
  ~Service();  // Stop()
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Stops intake, drains the graph, stores offsets, closes consumer and producer, flushes and
  // closes RocksDB, removes the runtime file. Returns what stopped the service on its own (a fatal
  // Kafka error, a halted intake), else OK. Idempotent.
  Status Stop();

  // OK while the service runs; the failure that halted it otherwise (then call Stop).
  Status health() const;
  const ServiceEndpoints& endpoints() const { return endpoints_; }

 private:
  explicit Service(const Config& config);
  Status StartParts();
  Status StartBroker();
  Status LoadModel();
  // Mask sequence numbers go on above the stored reservation (io/zmq_server.h ContinueSequence).
  Status ContinueMaskSequence();
  Status StartTrainer();
  Status StartConsumer();
  v1::QueryReply Answer(const v1::Query& query) const;
  void TickLoop();
  void Report() const;

  Config config_;  // effective: shards, devices and torch threads resolved
  std::vector<torch::Device> serving_devices_;
  torch::Device device_ = torch::kCPU;
  std::string lineage_;
  ServiceEndpoints endpoints_;

  std::unique_ptr<Store> store_;
  std::unique_ptr<MaskCache> cache_;  // for queries
  std::unique_ptr<EmbeddedBroker> broker_;
  ModelSlot models_;
  std::unique_ptr<VersionStore> versions_;
  StoredVersions stored_;  // what the store held at start
  std::unique_ptr<ZmqServer> zmq_;
  std::unique_ptr<KafkaProducer> producer_;
  std::unique_ptr<ContinuousTrainer> trainer_;  // null when trainer.continuous is off
  std::unique_ptr<Pipeline> pipeline_;          // touches trainer_; trainer_ asks it to redraw
  std::unique_ptr<KafkaConsumer> consumer_;     // pauses/resumes at the pipeline's request
  // Set once consumer_ exists: the query thread, started before it, reads its counters after.
  std::atomic<bool> consuming_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  bool stopped_ = false;   // GUARDED_BY(mu_)
  Status fatal_;           // GUARDED_BY(mu_): a fatal consumer error
  Status stop_result_;     // GUARDED_BY(mu_): what the first Stop returned
  std::thread ticker_;     // TickLoop: expiry ticks and the periodic report
};

}  // namespace clickdiff
