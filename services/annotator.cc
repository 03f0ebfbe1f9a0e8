#include "services/annotator.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <deque>
#include <utility>

namespace clickdiff {
namespace {

constexpr std::array<std::pair<int, int>, 4> kSteps = {{{1, 0}, {-1, 0}, {0, 1}, {0, -1}}};

// The squared Euclidean distance transform of one line (Felzenszwalb & Huttenlocher): f holds 0
// at the line's outside pixels and kFar inside; returns each pixel's squared distance to the
// nearest outside pixel.
constexpr double kFar = 1e20;

std::vector<double> DistanceTransform1d(const std::vector<double>& f) {
  const size_t n = f.size();
  std::vector<double> d(n);
  std::vector<size_t> v(n);
  std::vector<double> z(n + 1);
  size_t k = 0;
  v[0] = 0;
  z[0] = -kFar;
  z[1] = kFar;
  const auto square = [](double x) { return x * x; };
  const auto cut = [&](size_t q, size_t p) {  // where the parabolas of q and p meet
    const auto dq = static_cast<double>(q), dp = static_cast<double>(p);
    return ((f[q] + square(dq)) - (f[p] + square(dp))) / (2 * dq - 2 * dp);
  };
  for (size_t q = 1; q < n; ++q) {
    double s = cut(q, v[k]);
    while (k > 0 && s <= z[k]) s = cut(q, v[--k]);
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kFar;
  }
  k = 0;
  for (size_t q = 0; q < n; ++q) {
    while (z[k + 1] < static_cast<double>(q)) ++k;
    d[q] = square(static_cast<double>(q) - static_cast<double>(v[k])) + f[v[k]];
  }
  return d;
}

// The pixel of `region` (width * height flags) farthest, in Euclidean distance, from every pixel
// outside it (the image's border counts as outside); among equals the one nearest the region's
// centroid, so a band or a rectangle is clicked in its middle. -1 when empty.
int64_t FarthestFromBoundary(const std::vector<char>& region, int width, int height) {
  // On a grid padded by one outside pixel each way, columns then rows.
  const int pw = width + 2, ph = height + 2;
  std::vector<double> dist(static_cast<size_t>(pw) * ph, 0);
  double cx = 0, cy = 0, count = 0;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      if (region[static_cast<size_t>(y) * width + x] == 0) continue;
      dist[static_cast<size_t>(y + 1) * pw + (x + 1)] = kFar;
      cx += x;
      cy += y;
      ++count;
    }
  }
  if (count == 0) return -1;
  cx /= count;
  cy /= count;
  std::vector<double> line(static_cast<size_t>(ph));
  for (int x = 0; x < pw; ++x) {
    for (int y = 0; y < ph; ++y)
      line[static_cast<size_t>(y)] = dist[static_cast<size_t>(y) * pw + x];
    const std::vector<double> d = DistanceTransform1d(line);
    for (int y = 0; y < ph; ++y) dist[static_cast<size_t>(y) * pw + x] = d[static_cast<size_t>(y)];
  }
  for (int y = 0; y < ph; ++y) {
    const auto row = dist.begin() + static_cast<std::ptrdiff_t>(y) * pw;
    const std::vector<double> d = DistanceTransform1d(std::vector<double>(row, row + pw));
    std::copy(d.begin(), d.end(), row);
  }
  int64_t best = -1;
  double best_distance = 0, best_offset = 0;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      if (region[static_cast<size_t>(y) * width + x] == 0) continue;
      const double d = dist[static_cast<size_t>(y + 1) * pw + (x + 1)];
      const double offset = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      if (best < 0 || d > best_distance || (d == best_distance && offset < best_offset)) {
        best = static_cast<int64_t>(y) * width + x;
        best_distance = d;
        best_offset = offset;
      }
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
