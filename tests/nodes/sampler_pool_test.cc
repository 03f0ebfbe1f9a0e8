// The sampler threads against a fake sample source: priority order, sharding and joining, failures
// and stop. No model, no store: the pool's own contract.
#include "nodes/sampler_pool.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "nodes/intake.h"

namespace clickdiff {
namespace {

constexpr int64_t kSamples = 7;

// Draws shard k as ShardSamples(7, k, shards) 1x1 "samples" of value k. Image "fail" fails to
// prepare, "throw" throws while drawing, "cached" has its mask cached. While `hold` is set, every
// draw but a preview's waits for Release().
class FakeSource : public SampleSource {
 public:
  Result<PreparedRequest> Prepare(const InferRequest& request) const override {
    std::lock_guard<std::mutex> lock(mu_);
    prepared_.push_back(request.image_id);
    if (request.image_id == "fail") return Unavailable("no such image");
    PreparedRequest p;
    p.set.request = request;
    if (request.image_id == "cached") p.set.cached = v1::MaskResult();
    return p;
  }
  Result<torch::Tensor> Draw(const PreparedRequest& prepared, int64_t shard,
                             int64_t shards) const override {
    std::unique_lock<std::mutex> lock(mu_);
    ++drawing_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !hold_ || prepared.set.request.preview; });
    --drawing_;
    if (prepared.set.request.image_id == "throw") throw std::runtime_error("out of luck");
    return torch::full({Sampler::ShardSamples(kSamples, shard, shards), 1, 1}, shard,
                       torch::kInt64);
  }

  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  // Waits until `n` draws are held.
  void AwaitDrawing(int n) const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return drawing_ >= n; });
  }
  std::vector<std::string> prepared() const {
    std::lock_guard<std::mutex> lock(mu_);
    return prepared_;
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable std::vector<std::string> prepared_;  // GUARDED_BY(mu_)
  mutable int drawing_ = 0;                    // GUARDED_BY(mu_)
  bool hold_ = false;                          // GUARDED_BY(mu_)
};

// Collects what the pool hands on, by image.
class Outcomes {
 public:
  SamplerPool::Done For(const std::string& image) {
    return [this, image](std::optional<SampleSet> set) {
      std::lock_guard<std::mutex> lock(mu_);
      got_[image] = std::move(set);
      cv_.notify_all();
    };
  }
  // Waits (up to a minute) for `n` outcomes.
  bool Await(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return got_.size() >= n; });
  }
  std::optional<SampleSet> Of(const std::string& image) {
    std::lock_guard<std::mutex> lock(mu_);
    return got_.at(image);
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::optional<SampleSet>> got_;  // GUARDED_BY(mu_)
};

TEST(SamplerPoolTest, ShardsAreDrawnByDifferentThreadsAndJoinedInShardOrder) {
  FakeSource source;
  SamplerPool pool(&source, 3);
  ASSERT_TRUE(pool.Start().ok());
  Outcomes outcomes;
  source.Hold();
  pool.Submit(RequestFor("ds", "a"), outcomes.For("a"));
  source.AwaitDrawing(3);  // all three shards at once, each on a thread of its own
  source.Release();
  ASSERT_TRUE(outcomes.Await(1));
  std::optional<SampleSet> a = outcomes.Of("a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->request.image_id, "a");
  // 7 samples in 3 shards: 3 + 2 + 2, in shard order whichever finished first.
  EXPECT_TRUE(
      torch::equal(a->samples.flatten(), torch::tensor({0, 0, 0, 1, 1, 2, 2}, torch::kInt64)));
  EXPECT_EQ(pool.errors(), 0u);
}

TEST(SamplerPoolTest, WaitingRequestsAreTakenByPriorityThenInArrivalOrder) {
  FakeSource source;
  SamplerPool pool(&source, 1);
  ASSERT_TRUE(pool.Start().ok());
  Outcomes outcomes;
  source.Hold();
  pool.Submit(RequestFor("ds", "first", 0), outcomes.For("first"));
  source.AwaitDrawing(1);  // the one thread is busy: the rest wait
  pool.Submit(RequestFor("ds", "sweep", 0.2), outcomes.For("sweep"));
  pool.Submit(RequestFor("ds", "click1", kPriorityEvent), outcomes.For("click1"));
  pool.Submit(RequestFor("ds", "stale", kPriorityStale), outcomes.For("stale"));
  pool.Submit(RequestFor("ds", "click2", kPriorityEvent), outcomes.For("click2"));
  pool.Submit(RequestFor("ds", "uncertain", 0.9), outcomes.For("uncertain"));
  // Without a preview thread a click's preview queues too, ahead of everything.
  pool.Submit(PreviewFor("ds", "preview"), outcomes.For("preview"));
  source.Release();
  ASSERT_TRUE(outcomes.Await(7));
  EXPECT_EQ(source.prepared(), (std::vector<std::string>{"first", "preview", "click1", "click2",
                                                         "stale", "uncertain", "sweep"}));
}

TEST(SamplerPoolTest, APreviewThreadDrawsPreviewsWholeWhileTheOthersAreBusy) {
  FakeSource source;
  SamplerPool pool(&source, 2, /*preview_thread=*/true);
  ASSERT_TRUE(pool.Start().ok());
  Outcomes outcomes;
  source.Hold();
  pool.Submit(RequestFor("ds", "sweep", 0.5), outcomes.For("sweep"));
  source.AwaitDrawing(2);  // both sampler threads hold the sweep's shards
  pool.Submit(PreviewFor("ds", "click"), outcomes.For("click"));
  // A preview whose final mask is already cached hands on nothing: that mask is out.
  pool.Submit(PreviewFor("ds", "cached"), outcomes.For("cached"));
  ASSERT_TRUE(outcomes.Await(2));  // while the sweep still waits
  EXPECT_FALSE(outcomes.Of("cached").has_value());
  std::optional<SampleSet> click = outcomes.Of("click");
  ASSERT_TRUE(click.has_value());
  EXPECT_TRUE(click->request.preview);
  EXPECT_EQ(click->samples.size(0), kSamples);  // whole: one shard of all the samples
  source.Release();
  ASSERT_TRUE(outcomes.Await(3));
  ASSERT_TRUE(outcomes.Of("sweep").has_value());
  EXPECT_EQ(pool.errors(), 0u);
}

TEST(SamplerPoolTest, FailuresAreCountedAndHandOnNothingWhileCachedMasksSkipDrawing) {
  FakeSource source;
  SamplerPool pool(&source, 2);
  ASSERT_TRUE(pool.Start().ok());
  Outcomes outcomes;
  pool.Submit(RequestFor("ds", "fail"), outcomes.For("fail"));
  pool.Submit(RequestFor("ds", "throw"), outcomes.For("throw"));
  pool.Submit(RequestFor("ds", "cached"), outcomes.For("cached"));
  pool.Submit(RequestFor("ds", "fine"), outcomes.For("fine"));
  ASSERT_TRUE(outcomes.Await(4));
  EXPECT_FALSE(outcomes.Of("fail").has_value());
  EXPECT_FALSE(outcomes.Of("throw").has_value());  // the exception did not kill a thread
  ASSERT_TRUE(outcomes.Of("cached").has_value());
  EXPECT_TRUE(outcomes.Of("cached")->cached.has_value());
  EXPECT_FALSE(outcomes.Of("cached")->samples.defined());
  ASSERT_TRUE(outcomes.Of("fine").has_value());
  EXPECT_EQ(outcomes.Of("fine")->samples.size(0), kSamples);
  EXPECT_EQ(pool.errors(), 2u);
}

TEST(SamplerPoolTest, StopFinishesTheRequestInHandAndDropsTheQueuedOnes) {
  FakeSource source;
  SamplerPool pool(&source, 1);
  ASSERT_TRUE(pool.Start().ok());
  Outcomes outcomes;
  source.Hold();
  pool.Submit(RequestFor("ds", "in_hand"), outcomes.For("in_hand"));
  source.AwaitDrawing(1);
  pool.Submit(RequestFor("ds", "queued1"), outcomes.For("queued1"));
  pool.Submit(RequestFor("ds", "queued2"), outcomes.For("queued2"));
  std::thread stopper([&] { pool.Stop(); });
  ASSERT_TRUE(outcomes.Await(2));  // the queued ones are dropped before the one in hand ends
  EXPECT_FALSE(outcomes.Of("queued1").has_value());
  EXPECT_FALSE(outcomes.Of("queued2").has_value());
  source.Release();
  stopper.join();
  ASSERT_TRUE(outcomes.Of("in_hand").has_value());
  EXPECT_EQ(pool.errors(), 0u);  // dropping is not failing

  pool.Submit(RequestFor("ds", "late"), outcomes.For("late"));  // answered at once
  EXPECT_EQ(outcomes.size(), 4u);
  EXPECT_FALSE(outcomes.Of("late").has_value());
  EXPECT_EQ(pool.Start().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace clickdiff
