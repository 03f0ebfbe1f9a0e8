// nodes/infer_request.h — admits mask requests, one outstanding per image: while a request for an
// image waits for a sampler, more requests for it (a burst of clicks) are folded into it. The
// sampler reads the image's clicks when it starts, so the folded requests lose nothing. A request
// more urgent than the one waiting (a click on an image queued by a version sweep) still goes
// through, so it is not stuck behind the sweep; the other one then finds its mask cached. A
// click's preview and its final mask are separate requests: each folds only into its own kind.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "nodes/messages.h"

namespace clickdiff {

// Thread-safe.
class InferRequestGate {
 public:
  // True when the request should go on to a sampler; false when one for its image is waiting.
  bool operator()(const InferRequest& request);
  // Called by the sampler when it starts on a request: later requests for the image are admitted.
  void Started(const InferRequest& request);
  size_t waiting() const;

 private:
  static std::string Key(const InferRequest& request);

  mutable std::mutex mu_;
  std::map<std::string, double> waiting_;  // GUARDED_BY(mu_): Key(request) -> highest priority
};

}  // namespace clickdiff
