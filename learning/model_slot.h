// learning/model_slot.h — the model version the samplers serve. A new version is swapped in whole:
// a request holds the shared_ptr it started with, so it never sees a half-loaded model and the old
// version lives until its last request finishes.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/segmenter.h"

namespace clickdiff {

struct ServingModel {
  std::shared_ptr<const model::Segmenter> segmenter;  // on the first serving device
  // The same weights on each further serving device (one per extra GPU), so that sampler shards
  // spread over the GPUs; empty on a single device.
  std::vector<std::shared_ptr<const model::Segmenter>> replicas;
  uint64_t version = 0;
  uint64_t clicks_seen = 0;  // clicks this version was trained on (its ModelUpdate's clicks_seen)

  // The copy sampler shard `shard` draws with: the serving devices in turn. Valid while this
  // ServingModel lives (a request holds its shared_ptr).
  const model::Segmenter& ForShard(int64_t shard) const {
    const size_t i = static_cast<size_t>(shard) % (replicas.size() + 1);
    return i == 0 ? *segmenter : *replicas[i - 1];
  }
};

// Copies `model.segmenter` onto every device of `devices` but the first (its own) as replicas,
// replacing any it had. Errors: those of CheckpointStore::ToBytes/FromBytes, naming the device.
Status AddReplicas(ServingModel& model, const std::vector<torch::Device>& devices);
// The same from `checkpoint`, the model's bytes (CheckpointStore::ToBytes) a caller already has.
Status AddReplicas(ServingModel& model, const std::vector<torch::Device>& devices,
                   const std::string& checkpoint);

// Thread-safe.
class ModelSlot {
 public:
  std::shared_ptr<const ServingModel> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }
  void Set(std::shared_ptr<const ServingModel> model) {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = std::move(model);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ServingModel> current_;  // GUARDED_BY(mu_)
};

}  // namespace clickdiff
