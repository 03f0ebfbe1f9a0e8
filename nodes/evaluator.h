// nodes/evaluator.h — scores published masks against ground truth and keeps the learning curve.
//
// An image has ground truth when a dense LabelEvent marked for_evaluation was stored for it (such
// labels are never trained on). Every mask published for it is scored (Dice, IoU, HD95, precision,
// recall per class, at the image's own size); the per-image Metrics is stored under its model
// version, the version's aggregate (mean over the images scored at that version, split into images
// that had clicks and images that had none) is updated from running sums, and both are published
// on the Kafka `metrics` topic and on ZeroMQ (`metrics.<dataset>`). Aggregates carry the clicks
// the model version had seen (its stored ModelUpdate; 0 for a model the service did not train).
//
// Store layout (Family::kMetrics): "image\0<dataset>\0<version>\0<image_id>" and
// "version\0<dataset>\0<version>", versions zero-padded (keys::Version); the click intake's
// fresh-click checks live beside them (keys::ClickChecks).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/kafka_producer.h"
#include "io/store.h"
#include "io/zmq_server.h"
#include "schemas/events.pb.h"

namespace clickdiff {

struct EvaluatorOptions {
  int64_t num_classes = 2;
  std::string metrics_topic;  // empty: not produced to Kafka
  // When a dataset's first mask of a newer version is scored, the per-image records of its
  // versions keep_versions back and older, and the per-version records keep_curve_versions back
  // and older, are deleted (0: all kept).
  uint64_t keep_versions = 0;
  uint64_t keep_curve_versions = 0;
};

// Called by the serial publish stage only (not thread-safe against itself); store, producer and
// zmq (either may be null) are not owned.
class Evaluator {
 public:
  Evaluator(Store* store, KafkaProducer* producer, ZmqServer* zmq, EvaluatorOptions options);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // The aggregate Metrics of the mask's version after scoring it; nullopt when the image has no
  // evaluation label, or the version's records are no longer kept (keep_versions or more behind
  // the newest version scored for the dataset). Errors: store failures, a stored label that does
  // not parse (kDataLoss), a label whose size differs from the mask's (kInvalidArgument).
  // Publishing failures are logged.
  Result<std::optional<v1::Metrics>> operator()(const v1::MaskResult& mask);

  // The stored per-version aggregates of `dataset` (every dataset when empty), by dataset then
  // version, each with the version's fresh-click checks (nodes/click_intake.h); a version with
  // checks but no scored mask comes with the checks alone (images 0).
  static Result<std::vector<v1::Metrics>> VersionMetrics(const Store& store,
                                                         const std::string& dataset);

 private:
  Result<std::optional<v1::DenseMask>> Truth(const v1::MaskResult& mask) const;
  void Emit(const v1::Metrics& metrics, const std::string& key);
  struct Sums;
  Result<Sums*> VersionSums(const std::string& prefix);

  Store* store_;
  KafkaProducer* producer_;
  ZmqServer* zmq_;
  EvaluatorOptions options_;
  // Running sums per dataset and version (keyed by the records' prefix), so scoring a mask costs
  // the same however many images the version has.
  std::map<std::string, std::unique_ptr<Sums>> sums_;
  std::map<std::string, uint64_t> newest_;  // per dataset: the newest version scored
};

}  // namespace clickdiff
