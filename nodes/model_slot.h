// nodes/model_slot.h — the model version the samplers serve. A new version is swapped in whole:
// a request holds the shared_ptr it started with, so it never sees a half-loaded model and the old
// version lives until its last request finishes.
#pragma once

#include <memory>
#include <mutex>

#include "model/segmenter.h"

namespace clickdiff {

struct ServingModel {
  std::shared_ptr<const model::Segmenter> segmenter;
  uint64_t version = 0;
};

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
