#include "model/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace clickdiff::model {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string ShapeString(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// 1-D squared Euclidean distance transform (Felzenszwalb & Huttenlocher) of f[0..n) with stride.
void Edt1d(double* f, int64_t n, int64_t stride, std::vector<double>* d, std::vector<int64_t>* v,
           std::vector<double>* z) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  int64_t k = 0;
  (*v)[0] = 0;
  (*z)[0] = -kInf;
  (*z)[1] = kInf;
  // Skip leading infinities so the envelope starts at a finite sample.
  int64_t first = 0;
  while (first < n && std::isinf(f[first * stride])) ++first;
  if (first == n) return;  // no site on this line: all stay infinite
  (*v)[0] = first;
  for (int64_t q = first + 1; q < n; ++q) {
    const double fq = f[q * stride];
    if (std::isinf(fq)) continue;
    double s;
    while (true) {
      const int64_t p = (*v)[k];
      s = ((fq + q * q) - (f[p * stride] + p * p)) / (2.0 * (q - p));
      if (s <= (*z)[k] && k > 0) {
        --k;
      } else {
        break;
      }
    }
    ++k;
    (*v)[k] = q;
    (*z)[k] = s;
    (*z)[k + 1] = kInf;
  }
  k = 0;
  for (int64_t q = 0; q < n; ++q) {
    while ((*z)[k + 1] < q) ++k;
    const int64_t p = (*v)[k];
    (*d)[q] = (q - p) * (q - p) + f[p * stride];
  }
  for (int64_t q = 0; q < n; ++q) f[q * stride] = (*d)[q];
}

// Squared distance from every pixel to the nearest site (site[i] != 0), H x W row-major.
std::vector<double> SquaredDistanceTransform(const std::vector<uint8_t>& site, int64_t h,
                                             int64_t w) {
  std::vector<double> f(site.size());
  for (size_t i = 0; i < site.size(); ++i) {
    f[i] = site[i] ? 0.0 : std::numeric_limits<double>::infinity();
  }
  const int64_t n = std::max(h, w);
  std::vector<double> d(n);
  std::vector<int64_t> v(n);
  std::vector<double> z(n + 1);
  for (int64_t x = 0; x < w; ++x) Edt1d(f.data() + x, h, w, &d, &v, &z);      // columns
  for (int64_t y = 0; y < h; ++y) Edt1d(f.data() + y * w, w, 1, &d, &v, &z);  // rows
  return f;
}

// Pixels of `mask` with a 4-neighbour outside the mask or outside the image.
std::vector<uint8_t> Boundary(const std::vector<uint8_t>& mask, int64_t h, int64_t w) {
  std::vector<uint8_t> b(mask.size(), 0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      if (!mask[i]) continue;
      const bool interior = y > 0 && y < h - 1 && x > 0 && x < w - 1 && mask[i - 1] &&
                            mask[i + 1] && mask[i - w] && mask[i + w];
      b[i] = interior ? 0 : 1;
    }
  }
  return b;
}

// numpy.percentile(values, q) with linear interpolation. Precondition: !values.empty().
double Percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

// Directed p95 of distances from boundary pixels of `from` to the sites of `to_dt2`.
double DirectedP95(const std::vector<uint8_t>& from_boundary, const std::vector<double>& to_dt2) {
  std::vector<double> d;
  for (size_t i = 0; i < from_boundary.size(); ++i) {
    if (from_boundary[i]) d.push_back(std::sqrt(to_dt2[i]));
  }
  return Percentile(std::move(d), 95.0);
}

double Hd95Binary(const std::vector<uint8_t>& p, const std::vector<uint8_t>& t, int64_t h,
                  int64_t w, Hd95EmptyPolicy policy) {
  const bool p_empty = std::none_of(p.begin(), p.end(), [](uint8_t v) { return v != 0; });
  const bool t_empty = std::none_of(t.begin(), t.end(), [](uint8_t v) { return v != 0; });
  if (p_empty && t_empty) return 0.0;
  if (p_empty || t_empty) {
    return policy == Hd95EmptyPolicy::kNaN ? kNaN : std::sqrt(static_cast<double>(h * h + w * w));
  }
  const std::vector<uint8_t> bp = Boundary(p, h, w);
  const std::vector<uint8_t> bt = Boundary(t, h, w);
  const double p_to_t = DirectedP95(bp, SquaredDistanceTransform(bt, h, w));
  const double t_to_p = DirectedP95(bt, SquaredDistanceTransform(bp, h, w));
  return std::max(p_to_t, t_to_p);
}

std::vector<uint8_t> ToBinary(const torch::Tensor& mask) {
  torch::Tensor m = (mask.to(torch::kCPU) != 0).to(torch::kUInt8).contiguous();
  const uint8_t* data = m.data_ptr<uint8_t>();
  return std::vector<uint8_t>(data, data + m.numel());
}

bool Skipped(AbsentClassPolicy policy, int64_t truth_pixels, int64_t pred_pixels) {
  switch (policy) {
    case AbsentClassPolicy::kSkipIfBothEmpty:
      return truth_pixels == 0 && pred_pixels == 0;
    case AbsentClassPolicy::kSkipIfTruthEmpty:
      return truth_pixels == 0;
    case AbsentClassPolicy::kInclude:
      return false;
  }
  return false;
}

Status CheckLabels(const torch::Tensor& t, const char* what, int64_t num_classes) {
  if (!t.defined() || t.dim() != 2) {
    return InvalidArgument(std::string(what) + " must be a 2-D [H, W] tensor, got " +
                           (t.defined() ? ShapeString(t) : std::string("undefined")));
  }
  if (torch::isFloatingType(t.scalar_type()) || t.scalar_type() == torch::kBool) {
    return InvalidArgument(std::string(what) + " must hold integer class ids, got dtype " +
                           std::string(c10::toString(t.scalar_type())));
  }
  if (t.numel() == 0) return InvalidArgument(std::string(what) + " is empty");
  const int64_t lo = t.min().item<int64_t>();
  const int64_t hi = t.max().item<int64_t>();
  if (lo < 0 || hi >= num_classes) {
    return InvalidArgument(std::string(what) + " holds class id " +
                           std::to_string(lo < 0 ? lo : hi) + " outside [0, " +
                           std::to_string(num_classes) + ")");
  }
  return Status::Ok();
}

MeanScores MeanOf(const std::vector<ClassScores>& classes) {
  MeanScores m;
  int64_t n = 0, n_hd = 0;
  for (const ClassScores& c : classes) {
    if (c.images == 0) continue;
    m.dice += c.dice;
    m.iou += c.iou;
    m.precision += c.precision;
    m.recall += c.recall;
    ++n;
    if (!std::isnan(c.hd95)) {
      m.hd95 += c.hd95;
      ++n_hd;
    }
  }
  if (n == 0) return MeanScores{kNaN, kNaN, kNaN, kNaN, kNaN};
  m.dice /= n;
  m.iou /= n;
  m.precision /= n;
  m.recall /= n;
  m.hd95 = n_hd > 0 ? m.hd95 / n_hd : kNaN;
  return m;
}

}  // namespace

double Hd95(const torch::Tensor& pred_mask, const torch::Tensor& truth_mask,
            Hd95EmptyPolicy empty_policy) {
  const int64_t h = pred_mask.size(0);
  const int64_t w = pred_mask.size(1);
  return Hd95Binary(ToBinary(pred_mask), ToBinary(truth_mask), h, w, empty_policy);
}

Result<ImageScores> ScoreImage(const torch::Tensor& pred, const torch::Tensor& truth,
                               const MetricsOptions& options) {
  if (options.num_classes < 1) {
    return InvalidArgument("MetricsOptions.num_classes must be >= 1, got " +
                           std::to_string(options.num_classes));
  }
  try {
    CLICKDIFF_RETURN_IF_ERROR(CheckLabels(pred, "prediction", options.num_classes));
    CLICKDIFF_RETURN_IF_ERROR(CheckLabels(truth, "truth", options.num_classes));
    if (!pred.sizes().equals(truth.sizes())) {
      return InvalidArgument("prediction shape " + ShapeString(pred) +
                             " differs from truth shape " + ShapeString(truth));
    }
    const int64_t h = pred.size(0);
    const int64_t w = pred.size(1);
    const torch::Tensor p = pred.to(torch::kCPU, torch::kLong).contiguous();
    const torch::Tensor t = truth.to(torch::kCPU, torch::kLong).contiguous();
    const int64_t* pd = p.data_ptr<int64_t>();
    const int64_t* td = t.data_ptr<int64_t>();
    const int64_t n = h * w;

    ImageScores scores;
    for (int64_t c = options.include_background ? 0 : 1; c < options.num_classes; ++c) {
      std::vector<uint8_t> pm(n), tm(n);
      int64_t tp = 0, fp = 0, fn = 0;
      for (int64_t i = 0; i < n; ++i) {
        pm[i] = pd[i] == c;
        tm[i] = td[i] == c;
        tp += pm[i] && tm[i];
        fp += pm[i] && !tm[i];
        fn += !pm[i] && tm[i];
      }
      ClassScores s;
      s.class_id = c;
      s.truth_pixels = tp + fn;
      s.pred_pixels = tp + fp;
      const bool both_empty = tp + fp + fn == 0;
      s.dice = both_empty ? 1.0 : 2.0 * tp / static_cast<double>(2 * tp + fp + fn);
      s.iou = both_empty ? 1.0 : tp / static_cast<double>(tp + fp + fn);
      s.precision = s.pred_pixels == 0 ? (s.truth_pixels == 0 ? 1.0 : 0.0)
                                       : tp / static_cast<double>(s.pred_pixels);
      s.recall = s.truth_pixels == 0 ? (s.pred_pixels == 0 ? 1.0 : 0.0)
                                     : tp / static_cast<double>(s.truth_pixels);
      s.hd95 = options.compute_hd95 ? Hd95Binary(pm, tm, h, w, options.hd95_empty) : kNaN;
      s.hd95_undefined = std::isnan(s.hd95) ? 1 : 0;
      s.images = Skipped(options.absent_class, s.truth_pixels, s.pred_pixels) ? 0 : 1;
      scores.per_class.push_back(s);
    }
    scores.mean = MeanOf(scores.per_class);
    return scores;
  } catch (const std::exception& e) {
    return Internal(std::string("ScoreImage: ") + e.what());
  }
}

MetricsAccumulator::MetricsAccumulator(MetricsOptions options)
    : options_(options), sums_(static_cast<size_t>(std::max<int64_t>(options.num_classes, 0))) {}

Status MetricsAccumulator::Add(const torch::Tensor& pred, const torch::Tensor& truth) {
  Result<ImageScores> scores = ScoreImage(pred, truth, options_);
  if (!scores.ok()) return scores.status();
  Add(*scores);
  return Status::Ok();
}

void MetricsAccumulator::Add(const ImageScores& scores) {
  ++num_images_;
  for (const ClassScores& c : scores.per_class) {
    if (c.images == 0 || c.class_id < 0 || c.class_id >= static_cast<int64_t>(sums_.size())) {
      continue;
    }
    Sums& s = sums_[c.class_id];
    ++s.images;
    s.dice += c.dice;
    s.iou += c.iou;
    s.precision += c.precision;
    s.recall += c.recall;
    s.truth_pixels += c.truth_pixels;
    s.pred_pixels += c.pred_pixels;
    if (std::isnan(c.hd95)) {
      ++s.hd95_undefined;
    } else {
      s.hd95 += c.hd95;
      ++s.hd95_images;
    }
  }
}

DatasetScores MetricsAccumulator::Finish() const {
  DatasetScores out;
  out.num_images = num_images_;
  for (int64_t c = options_.include_background ? 0 : 1; c < options_.num_classes; ++c) {
    const Sums& s = sums_[c];
    ClassScores m;
    m.class_id = c;
    m.images = s.images;
    m.truth_pixels = s.truth_pixels;
    m.pred_pixels = s.pred_pixels;
    m.hd95_undefined = s.hd95_undefined;
    if (s.images == 0) {
      m.dice = m.iou = m.precision = m.recall = m.hd95 = kNaN;
    } else {
      m.dice = s.dice / s.images;
      m.iou = s.iou / s.images;
      m.precision = s.precision / s.images;
      m.recall = s.recall / s.images;
      m.hd95 = s.hd95_images > 0 ? s.hd95 / s.hd95_images : kNaN;
    }
    out.per_class.push_back(m);
  }
  out.mean = MeanOf(out.per_class);
  return out;
}

}  // namespace clickdiff::model
