#include "services/annotator.h"

#include <array>
#include <deque>
#include <utility>

namespace clickdiff {
namespace {

constexpr std::array<std::pair<int, int>, 4> kSteps = {{{1, 0}, {-1, 0}, {0, 1}, {0, -1}}};

// The pixel of `region` (width * height flags) with the most 4-connected steps to a pixel outside
// it (the border counts as outside); the first in row-major order among equals. -1 when empty.
int64_t FarthestFromBoundary(const std::vector<char>& region, int width, int height) {
  std::vector<int> distance(region.size(), 0);
  std::deque<int64_t> queue;
  auto inside = [&](int x, int y) {
    return x >= 0 && y >= 0 && x < width && y < height &&
           region[static_cast<size_t>(y) * width + x] != 0;
  };
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      if (!inside(x, y)) continue;
      bool edge = false;
      for (auto [dx, dy] : kSteps) edge = edge || !inside(x + dx, y + dy);
      if (edge) {
        const int64_t i = static_cast<int64_t>(y) * width + x;
        distance[static_cast<size_t>(i)] = 1;
        queue.push_back(i);
      }
    }
  }
  while (!queue.empty()) {
    const int64_t i = queue.front();
    queue.pop_front();
    const int x = static_cast<int>(i % width), y = static_cast<int>(i / width);
    for (auto [dx, dy] : kSteps) {
      if (!inside(x + dx, y + dy)) continue;
      const size_t j = static_cast<size_t>(y + dy) * width + (x + dx);
      if (distance[j] != 0) continue;
      distance[j] = distance[static_cast<size_t>(i)] + 1;
      queue.push_back(static_cast<int64_t>(j));
    }
  }
  int64_t best = -1;
  for (size_t i = 0; i < distance.size(); ++i) {
    if (distance[i] > 0 && (best < 0 || distance[i] > distance[static_cast<size_t>(best)])) {
      best = static_cast<int64_t>(i);
    }
  }
  return best;
}

// The largest 4-connected component of `flags` (the first found, in row-major order, among
// equals), as flags; empty when `flags` has none set.
std::vector<char> LargestComponent(const std::vector<char>& flags, int width, int height) {
  std::vector<int> label(flags.size(), 0);
  std::vector<int64_t> sizes = {0};
  for (size_t start = 0; start < flags.size(); ++start) {
    if (flags[start] == 0 || label[start] != 0) continue;
    const int id = static_cast<int>(sizes.size());
    int64_t size = 0;
    std::deque<size_t> queue = {start};
    label[start] = id;
    while (!queue.empty()) {
      const size_t i = queue.front();
      queue.pop_front();
      ++size;
      const int x = static_cast<int>(i % width), y = static_cast<int>(i / width);
      for (auto [dx, dy] : kSteps) {
        const int nx = x + dx, ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const size_t j = static_cast<size_t>(ny) * width + nx;
        if (flags[j] == 0 || label[j] != 0) continue;
        label[j] = id;
        queue.push_back(j);
      }
    }
    sizes.push_back(size);
  }
  int largest = 0;
  for (size_t id = 1; id < sizes.size(); ++id) {
    if (sizes[id] > sizes[static_cast<size_t>(largest)]) largest = static_cast<int>(id);
  }
  if (largest == 0) return {};
  std::vector<char> component(flags.size(), 0);
  for (size_t i = 0; i < flags.size(); ++i) component[i] = label[i] == largest ? 1 : 0;
  return component;
}

SimulatedClick ClickAt(int64_t pixel, int width, int class_id, bool positive) {
  return {static_cast<int>(pixel % width), static_cast<int>(pixel / width), class_id, positive};
}

}  // namespace

std::optional<SimulatedClick> FirstClick(const LabelGrid& truth, int class_id) {
  std::vector<char> object(truth.ids.size());
  for (size_t i = 0; i < object.size(); ++i) object[i] = truth.ids[i] == class_id ? 1 : 0;
  const int64_t at = FarthestFromBoundary(object, truth.width, truth.height);
  if (at < 0) return std::nullopt;
  return ClickAt(at, truth.width, class_id, true);
}

std::optional<SimulatedClick> CorrectiveClick(const LabelGrid& truth, const LabelGrid& mask,
                                              int class_id) {
  std::vector<char> missed(truth.ids.size()), wrong(truth.ids.size());
  for (size_t i = 0; i < missed.size(); ++i) {
    const bool t = truth.ids[i] == class_id, m = mask.ids[i] == class_id;
    missed[i] = t && !m ? 1 : 0;
    wrong[i] = m && !t ? 1 : 0;
  }
  const std::vector<char> a = LargestComponent(missed, truth.width, truth.height);
  const std::vector<char> b = LargestComponent(wrong, truth.width, truth.height);
  auto size = [](const std::vector<char>& r) {
    int64_t n = 0;
    for (char c : r) n += c;
    return n;
  };
  const int64_t na = size(a), nb = size(b);
  if (na == 0 && nb == 0) return std::nullopt;
  if (na >= nb)
    return ClickAt(FarthestFromBoundary(a, truth.width, truth.height), truth.width, class_id, true);
  const int64_t at = FarthestFromBoundary(b, truth.width, truth.height);
  // A false region on another structure is corrected by naming that structure there.
  const auto truth_there = static_cast<int>(truth.ids[static_cast<size_t>(at)]);
  return truth_there != 0 ? ClickAt(at, truth.width, truth_there, true)
                          : ClickAt(at, truth.width, class_id, false);
}

double ClassDice(const LabelGrid& truth, const LabelGrid& mask, int class_id) {
  int64_t both = 0, in_truth = 0, in_mask = 0;
  for (size_t i = 0; i < truth.ids.size(); ++i) {
    const bool t = truth.ids[i] == class_id, m = mask.ids[i] == class_id;
    both += t && m ? 1 : 0;
    in_truth += t ? 1 : 0;
    in_mask += m ? 1 : 0;
  }
  if (in_truth + in_mask == 0) return 1;
  return 2.0 * static_cast<double>(both) / static_cast<double>(in_truth + in_mask);
}

}  // namespace clickdiff
