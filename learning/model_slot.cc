#include "learning/model_slot.h"

#include "model/checkpoint_store.h"

namespace clickdiff {

Status AddReplicas(ServingModel& model, const std::vector<torch::Device>& devices) {
  if (devices.size() < 2) {
    model.replicas.clear();
    return Status::Ok();
  }
  Result<std::string> bytes = model::CheckpointStore::ToBytes(*model.segmenter);
  if (!bytes.ok()) return bytes.status().WithContext("replicas");
  return AddReplicas(model, devices, *bytes);
}

Status AddReplicas(ServingModel& model, const std::vector<torch::Device>& devices,
                   const std::string& checkpoint) {
  model.replicas.clear();
  for (size_t i = 1; i < devices.size(); ++i) {
    const std::string name =
        "model version " + std::to_string(model.version) + " on " + devices[i].str();
    Result<model::Segmenter> copy = model::CheckpointStore::FromBytes(checkpoint, name, devices[i]);
    if (!copy.ok()) return copy.status();
    model.replicas.push_back(std::make_shared<const model::Segmenter>(std::move(copy).value()));
  }
  return Status::Ok();
}

}  // namespace clickdiff
