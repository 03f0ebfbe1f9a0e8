#include "learning/version_gate.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace clickdiff {
namespace {

// Hash buckets per unit of share.
constexpr uint64_t kBuckets = 10000;

}  // namespace

VersionGate::VersionGate(VersionGateOptions options) : options_(options) {}

bool VersionGate::Eligible(const std::string& image_key) const {
  if (options_.share <= 0 || options_.max_images <= 0) return false;
  const uint64_t hash = std::hash<std::string>{}(std::to_string(options_.seed) + '\0' + image_key);
  return static_cast<double>(hash % kBuckets) < options_.share * static_cast<double>(kBuckets);
}

std::vector<size_t> VersionGate::Split(const std::vector<ReplayExample>& examples) {
  held_out_.clear();
  if (options_.share <= 0 || options_.max_images <= 0) {  // no gate: everything trains
    std::vector<size_t> all(examples.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    return all;
  }
  std::vector<size_t> candidates;  // eligible and never trained on
  std::vector<size_t> train;
  for (size_t i = 0; i < examples.size(); ++i) {
    const std::string& key = examples[i].image_key;
    if (first_seen_.emplace(key, seen_).second) ++seen_;
    if (Eligible(key) && released_.count(key) == 0) {
      candidates.push_back(i);
    } else {
      train.push_back(i);
    }
  }
  // The newest first; beyond max_images the older ones are released into training.
  std::sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
    return first_seen_.at(examples[a].image_key) > first_seen_.at(examples[b].image_key);
  });
  // Nothing else to train on: the candidates train (for good) rather than the trainer idling.
  // Candidates beyond max_images train anyway, so then the newest are still held out.
  const bool hold = !train.empty() || static_cast<int64_t>(candidates.size()) > options_.max_images;
  for (size_t n = 0; n < candidates.size(); ++n) {
    const size_t i = candidates[n];
    if (hold && static_cast<int64_t>(n) < options_.max_images) {
      held_out_.push_back(examples[i]);
    } else {
      released_.insert(examples[i].image_key);
      train.push_back(i);
    }
  }
  std::sort(train.begin(), train.end());
  return train;
}

Result<GateVerdict> VersionGate::Judge(model::Segmenter& candidate, model::Segmenter& served) {
  GateVerdict verdict;
  verdict.images = held_out_.size();
  if (held_out_.size() < 2) return verdict;
  SetId set;
  std::vector<model::TrainingExample> data;
  for (const ReplayExample& e : held_out_) {
    set.emplace_back(e.image_key, e.revision);
    data.push_back(e.example);
  }
  std::sort(set.begin(), set.end());
  auto loss_of = [&](model::Segmenter& model) {
    return model.HeldOutLoss(data, options_.batch_size, options_.draws, options_.seed);
  };
  if (!lowest_ || set != judged_) {
    Result<float> reference = loss_of(served);
    if (!reference.ok())
      return reference.status().WithContext("the served version's held-out loss");
    lowest_ = *reference;
    judged_ = std::move(set);
  }
  Result<float> loss = loss_of(candidate);
  if (!loss.ok()) return loss.status().WithContext("the candidate's held-out loss");
  verdict.loss = *loss;
  verdict.lowest = *lowest_;
  verdict.publish = std::isfinite(*loss) && *loss <= (1 + options_.tolerance) * *lowest_;
  return verdict;
}

void VersionGate::Published(const GateVerdict& verdict) {
  if (verdict.images >= 2 && lowest_) lowest_ = std::min(*lowest_, verdict.loss);
}

}  // namespace clickdiff
