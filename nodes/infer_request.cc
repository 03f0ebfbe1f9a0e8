#include "nodes/infer_request.h"

#include "io/keys.h"

namespace clickdiff {

std::string InferRequestGate::Key(const InferRequest& request) {
  const std::string image = keys::Image(request.dataset, request.image_id);
  return request.preview ? keys::Child(image, "preview") : image;  // ids hold no NUL: no alias
}

bool InferRequestGate::operator()(const InferRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = waiting_.emplace(Key(request), request.priority);
  if (fresh || request.priority <= it->second) return fresh;
  it->second = request.priority;  // more urgent than the one waiting: let it overtake
  return true;
}

void InferRequestGate::Started(const InferRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  waiting_.erase(Key(request));
}

size_t InferRequestGate::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_.size();
}

}  // namespace clickdiff
