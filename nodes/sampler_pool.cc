#include "nodes/sampler_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/guard.h"

namespace clickdiff {

SamplerPool::SamplerPool(const SampleSource* source, int shards, bool preview_thread)
    : source_(source), shards_(std::max(1, shards)), preview_thread_(preview_thread) {}

SamplerPool::~SamplerPool() { Stop(); }

Status SamplerPool::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_ || stopping_) return FailedPrecondition("sampler pool: started twice");
  started_ = true;
  for (int i = 0; i < shards_; ++i) threads_.emplace_back([this] { Run(); });
  if (preview_thread_) threads_.emplace_back([this] { RunPreviews(); });
  return Status::Ok();
}

void SamplerPool::Submit(const InferRequest& request, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      if (preview_thread_ && request.preview) {
        previews_.push_back(Job{request, std::move(done), nullptr, 0});
      } else {
        queue_.Push(request.priority, Job{request, std::move(done), nullptr, 0});
      }
      cv_.notify_all();  // the preview thread waits on the same condition
      return;
    }
  }
  done(std::nullopt);  // stopping: dropped, redrawn after a restart
}

void SamplerPool::Stop() {
  std::vector<Job> dropped;
  std::deque<Job> shards;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped = queue_.TakeAll();
    for (Job& job : previews_) dropped.push_back(std::move(job));
    previews_.clear();
    shards.swap(shards_queue_);
    cv_.notify_all();
  }
  for (Job& job : dropped) job.done(std::nullopt);
  for (Job& job : shards) Finish(*job.join, job.shard, Unavailable("the service is stopping"));
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

bool SamplerPool::Stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void SamplerPool::Run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !shards_queue_.empty(); });
      if (!shards_queue_.empty()) {
        job = std::move(shards_queue_.front());
        shards_queue_.pop_front();
      } else if (!queue_.empty()) {
        job = std::move(queue_.Pop()).value();
      } else {
        return;
      }
    }
    if (job.join) {
      Finish(*job.join, job.shard, Guarded("sampler", [&] {
        return source_->Draw(job.join->prepared, job.shard, shards_);
      }));
    } else {
      Begin(job, shards_);
    }
  }
}

void SamplerPool::RunPreviews() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !previews_.empty(); });
      if (stopping_) return;  // Stop dropped the queued ones
      job = std::move(previews_.front());
      previews_.pop_front();
    }
    Begin(job, 1);
  }
}

void SamplerPool::Begin(Job& job, int shards) {
  Result<PreparedRequest> prepared =
      Guarded("sampler", [&] { return source_->Prepare(job.request); });
  if (!prepared.ok()) {
    Fail(job.request, job.done, prepared.status());
    return;
  }
  if (prepared->set.cached.has_value()) {
    // A preview that finds its final mask cached is late: that mask is already out.
    job.done(job.request.preview ? std::nullopt : std::optional(std::move(prepared->set)));
    return;
  }
  auto join = std::make_shared<Join>();
  join->prepared = std::move(prepared).value();
  join->done = std::move(job.done);
  join->parts.resize(static_cast<size_t>(shards));
  join->remaining = shards;
  if (shards > 1) {
    std::lock_guard<std::mutex> lock(mu_);
    for (int shard = 1; shard < shards; ++shard) {
      shards_queue_.push_back(Job{job.request, nullptr, join, shard});
    }
    cv_.notify_all();
  }
  Finish(*join, 0, Guarded("sampler", [&] { return source_->Draw(join->prepared, 0, shards); }));
}

// Records one shard; the last one hands the joined samples on (or reports the failure).
void SamplerPool::Finish(Join& join, int shard, Result<torch::Tensor> drawn) {
  {
    std::lock_guard<std::mutex> lock(join.mu);
    if (drawn.ok()) {
      join.parts[static_cast<size_t>(shard)] = std::move(drawn).value();
    } else if (join.failure.ok()) {
      join.failure = drawn.status();
    }
    if (--join.remaining > 0) return;
  }
  Status joined = join.failure;
  if (joined.ok()) {
    joined = Guarded("sampler: joining shards", [&] {
      join.prepared.set.samples = join.parts.size() == 1 ? join.parts[0] : torch::cat(join.parts);
      return Status::Ok();
    });
  }
  if (!joined.ok()) {
    Fail(join.prepared.set.request, join.done, joined);
    return;
  }
  join.done(std::move(join.prepared.set));
}

void SamplerPool::Fail(const InferRequest& request, const Done& done, const Status& status) {
  if (!Stopping()) {  // shards dropped by Stop are not failures
    errors_.fetch_add(1);
    spdlog::error("sampler: {}/{}: {}", request.dataset, request.image_id, status.ToString());
  }
  done(std::nullopt);
}

}  // namespace clickdiff
