// nodes/priority_fifo.h — a queue that hands out its highest-priority item first, and among
// items of equal priority the one pushed first. The sampler pool's waiting room: a new click
// overtakes a new model version's sweep of older masks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace clickdiff {

// Not thread-safe: the owner locks.
template <typename T>
class PriorityFifo {
 public:
  void Push(double priority, T item) {
    items_.emplace(std::make_pair(-priority, next_++), std::move(item));
  }
  std::optional<T> Pop() {
    if (items_.empty()) return std::nullopt;
    auto first = items_.begin();
    T item = std::move(first->second);
    items_.erase(first);
    return item;
  }
  // Everything still waiting, in the order Pop would have returned it; the queue is left empty.
  std::vector<T> TakeAll() {
    std::vector<T> all;
    all.reserve(items_.size());
    for (auto& [key, item] : items_) all.push_back(std::move(item));
    items_.clear();
    return all;
  }
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }

 private:
  std::map<std::pair<double, uint64_t>, T> items_;  // (-priority, arrival) -> item
  uint64_t next_ = 0;
};

}  // namespace clickdiff
