// nodes/sampler_pool.h — the sampler threads: they take waiting mask requests by priority
// (InferRequest::priority; first come first served among equals) and draw their samples, outside
// TBB's worker pool so that minutes of LibTorch work never starve the graph.
//
// With k = `shards` > 1 the thread that takes a request prepares it (SampleSource::Prepare pins
// the model version), queues shards 1..k-1 ahead of every waiting request for the other threads,
// draws shard 0 itself, and whichever thread finishes the last shard joins the samples in shard
// order and hands them on. A request whose mask is cached is handed on without drawing (a preview
// then hands on nothing: its final mask is already out).
//
// With `preview_thread`, one more thread takes a click's previews (InferRequest::preview) alone,
// whole, in arrival order: a click's first answer never waits behind the request in hand (a
// version's sweep draws for seconds per image on a CPU). Without it previews queue with the rest,
// ahead of them by priority.
//
// Thread-safety: every method may be called from any thread. Each submitted request's `done` is
// called exactly once: from a pool thread, or from Submit/Stop when the pool is stopping.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/status.h"
#include "nodes/messages.h"
#include "nodes/priority_fifo.h"
#include "nodes/sampler.h"

namespace clickdiff {

class SamplerPool {
 public:
  // Receives the request's samples (or its cached mask), or nothing when it failed (logged and
  // counted in errors()) or was dropped by Stop.
  using Done = std::function<void(std::optional<SampleSet>)>;

  // `source` is not owned and must outlive the pool. `shards` threads, each request split that
  // many ways (at least 1), and with `preview_thread` one for previews. Starts nothing.
  SamplerPool(const SampleSource* source, int shards, bool preview_thread = false);
  ~SamplerPool();  // Stop()
  SamplerPool(const SamplerPool&) = delete;
  SamplerPool& operator=(const SamplerPool&) = delete;

  // Starts the threads. Errors: kFailedPrecondition when started twice or after Stop.
  Status Start();
  // Queues `request`; after Stop, `done` gets nothing at once.
  void Submit(const InferRequest& request, Done done);
  // Drops queued requests and queued shards (their `done` gets nothing), lets the work in hand
  // finish, joins. Idempotent.
  void Stop();

  // Requests that failed (not those dropped by Stop).
  uint64_t errors() const { return errors_.load(); }

 private:
  // One sharded request in flight: the shards' samples as they come in.
  struct Join {
    PreparedRequest prepared;
    Done done;
    std::mutex mu;
    std::vector<torch::Tensor> parts;  // GUARDED_BY(mu)
    int remaining = 0;                 // GUARDED_BY(mu)
    Status failure;                    // GUARDED_BY(mu): the first shard's failure
  };
  struct Job {
    InferRequest request;
    Done done;                   // of a request not started
    std::shared_ptr<Join> join;  // set for shards 1..k-1 of a started request
    int shard = 0;
  };

  void Run();
  void RunPreviews();
  // Prepares the job's request and draws it in `shards` shards (shard 0 on this thread).
  void Begin(Job& job, int shards);
  void Finish(Join& join, int shard, Result<torch::Tensor> drawn);
  void Fail(const InferRequest& request, const Done& done, const Status& status);
  bool Stopping() const;

  const SampleSource* source_;
  const int shards_;
  const bool preview_thread_;
  std::atomic<uint64_t> errors_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  PriorityFifo<Job> queue_;       // GUARDED_BY(mu_): requests not started
  std::deque<Job> shards_queue_;  // GUARDED_BY(mu_): shards of started requests, taken first
  std::deque<Job> previews_;      // GUARDED_BY(mu_): previews for the preview thread
  bool started_ = false;          // GUARDED_BY(mu_)
  bool stopping_ = false;         // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace clickdiff
