#include "model/preprocess.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

namespace clickdiff::model {
namespace {

namespace F = torch::nn::functional;

// The mapping's region of a [..., H, W] tensor (a view).
torch::Tensor RegionOf(const torch::Tensor& t, const GridMapping& m) {
  if (!m.Cropped()) return t;
  const int64_t h_dim = t.dim() - 2;
  return t.slice(h_dim, m.region.y, m.region.y + m.region.height)
      .slice(h_dim + 1, m.region.x, m.region.x + m.region.width);
}

// Pads a [C,h,w] region to the mapping's centred square with `value`.
torch::Tensor PadToSquare(const torch::Tensor& t, const GridMapping& m, double value) {
  int64_t right = m.side - m.region.width - m.pad_x;
  int64_t bottom = m.side - m.region.height - m.pad_y;
  return F::pad(t, F::PadFuncOptions({m.pad_x, right, m.pad_y, bottom}).value(value));
}

int64_t GridCoordinate(double image_coordinate, const GridMapping& m) {
  auto cell = static_cast<int64_t>(std::floor(image_coordinate * m.resolution / m.side));
  return std::clamp<int64_t>(cell, 0, m.resolution - 1);
}

}  // namespace

std::pair<int64_t, int64_t> GridMapping::ToGrid(int64_t x, int64_t y) const {
  // The pixel's centre decides the cell.
  // A pixel outside the region is taken to the nearest pixel of its edge first.
  const int64_t rx = std::clamp<int64_t>(x, region.x, region.x + region.width - 1) - region.x;
  const int64_t ry = std::clamp<int64_t>(y, region.y, region.y + region.height - 1) - region.y;
  return {GridCoordinate(static_cast<double>(rx + pad_x) + 0.5, *this),
          GridCoordinate(static_cast<double>(ry + pad_y) + 0.5, *this)};
}

int64_t GridMapping::GridX0() const { return GridCoordinate(pad_x, *this); }
int64_t GridMapping::GridY0() const { return GridCoordinate(pad_y, *this); }
int64_t GridMapping::GridX1() const {
  auto end = static_cast<int64_t>(
      std::ceil(static_cast<double>(pad_x + region.width) * resolution / side));
  return std::clamp<int64_t>(end, GridX0() + 1, resolution);
}
int64_t GridMapping::GridY1() const {
  auto end = static_cast<int64_t>(
      std::ceil(static_cast<double>(pad_y + region.height) * resolution / side));
  return std::clamp<int64_t>(end, GridY0() + 1, resolution);
}

Result<GridMapping> MakeGridMapping(int64_t width, int64_t height, int64_t resolution,
                                    const ImageRegion& region) {
  if (width <= 0 || height <= 0) {
    return InvalidArgument("image size " + std::to_string(width) + "x" + std::to_string(height) +
                           " must be positive");
  }
  if (resolution <= 0) return InvalidArgument("model resolution must be positive");
  GridMapping m;
  m.width = width;
  m.height = height;
  m.region = region.width == 0 ? ImageRegion{0, 0, width, height} : region;
  const ImageRegion& r = m.region;
  if (r.x < 0 || r.y < 0 || r.width < 1 || r.height < 1 || r.x + r.width > width ||
      r.y + r.height > height) {
    return InvalidArgument("the region " + std::to_string(r.width) + "x" +
                           std::to_string(r.height) + " at (" + std::to_string(r.x) + ", " +
                           std::to_string(r.y) + ") is not inside the " + std::to_string(width) +
                           "x" + std::to_string(height) + " image");
  }
  m.resolution = resolution;
  m.side = std::max(r.width, r.height);
  m.pad_x = (m.side - r.width) / 2;
  m.pad_y = (m.side - r.height) / 2;
  return m;
}

Result<ImageRegion> ContentRegion(const float* pixels, int64_t width, int64_t height,
                                  int64_t channels, const ContentOptions& options) {
  if (pixels == nullptr) return InvalidArgument("no pixels");
  if (width <= 0 || height <= 0 || channels < 1) {
    return InvalidArgument("image size " + std::to_string(width) + "x" + std::to_string(height) +
                           "x" + std::to_string(channels) + " must be positive");
  }
  // [H, W]: each pixel's brightest channel; the scalars below in double (the range of float32's
  // extremes fits there).
  const torch::Tensor image =
      torch::from_blob(const_cast<float*>(pixels), {height, width, channels}, torch::kFloat32)
          .amax(2);
  const torch::Tensor flat = image.flatten();
  const double darkest = flat.min().item<double>();
  const int64_t k = std::clamp<int64_t>(
      std::llround(0.995 * static_cast<double>(flat.numel() - 1)) + 1, 1, flat.numel());
  const double bright = std::get<0>(flat.kthvalue(k)).item<double>();
  if (!(bright > darkest)) return ImageRegion{};
  // Content on blocks of `block` pixels (at most 256 blocks a side), joined across gaps of up to
  // two blocks (a 3x3 dilation, diagonals included).
  const int64_t block = (std::max(width, height) + 255) / 256;
  const torch::Tensor content =
      F::max_pool2d(image.gt(darkest + options.threshold * (bright - darkest))
                        .to(torch::kFloat32)
                        .unsqueeze(0)
                        .unsqueeze(0),
                    F::MaxPool2dFuncOptions(block).stride(block).ceil_mode(true))[0][0];
  const torch::Tensor joined = F::max_pool2d(content.unsqueeze(0).unsqueeze(0),
                                             F::MaxPool2dFuncOptions(3).stride(1).padding(1))[0][0]
                                   .gt(0)
                                   .to(torch::kUInt8)
                                   .contiguous();
  const int64_t bh = joined.size(0);
  const int64_t bw = joined.size(1);
  // Connected parts (4-neighbours) of the joined blocks, by flood fill; label 0 is none.
  const uint8_t* on = joined.data_ptr<uint8_t>();
  std::vector<int32_t> label(static_cast<size_t>(bh * bw), 0);
  std::vector<int64_t> sizes = {0};
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < bh * bw; ++start) {
    if (on[start] == 0 || label[static_cast<size_t>(start)] != 0) continue;
    const auto id = static_cast<int32_t>(sizes.size());
    sizes.push_back(0);
    stack.assign(1, start);
    label[static_cast<size_t>(start)] = id;
    while (!stack.empty()) {
      const int64_t at = stack.back();
      stack.pop_back();
      ++sizes.back();
      const int64_t y = at / bw;
      const int64_t x = at % bw;
      for (const auto& [ny, nx] : {std::pair{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}}) {
        if (ny < 0 || ny >= bh || nx < 0 || nx >= bw) continue;
        const int64_t next = ny * bw + nx;
        if (on[next] == 0 || label[static_cast<size_t>(next)] != 0) continue;
        label[static_cast<size_t>(next)] = id;
        stack.push_back(next);
      }
    }
  }
  if (sizes.size() == 1) return ImageRegion{};
  // The parts that matter: those at least min_part_share of the largest (a caption or a ruler
  // in the frame is not content).
  const int64_t largest = *std::max_element(sizes.begin(), sizes.end());
  const torch::Tensor blocks = content.contiguous();
  const float* raw = blocks.data_ptr<float>();
  int64_t bx0 = bw;
  int64_t bx1 = -1;
  int64_t by0 = bh;
  int64_t by1 = -1;
  for (int64_t i = 0; i < bh * bw; ++i) {
    const int32_t id = label[static_cast<size_t>(i)];
    if (id == 0 || raw[i] == 0 ||
        static_cast<double>(sizes[static_cast<size_t>(id)]) <
            options.min_part_share * static_cast<double>(largest)) {
      continue;
    }
    bx0 = std::min(bx0, i % bw);
    bx1 = std::max(bx1, i % bw);
    by0 = std::min(by0, i / bw);
    by1 = std::max(by1, i / bw);
  }
  const auto margin = static_cast<int64_t>(
      std::ceil(options.margin * static_cast<double>(std::max(width, height))));
  const int64_t x0 = std::max<int64_t>(0, bx0 * block - margin);
  const int64_t x1 = std::min<int64_t>(width, (bx1 + 1) * block + margin);
  const int64_t y0 = std::max<int64_t>(0, by0 * block - margin);
  const int64_t y1 = std::min<int64_t>(height, (by1 + 1) * block + margin);
  const double kept =
      static_cast<double>((x1 - x0) * (y1 - y0)) / static_cast<double>(width * height);
  if (kept > 1.0 - options.min_saving) return ImageRegion{};
  return ImageRegion{x0, y0, x1 - x0, y1 - y0};
}

Result<GridMapping> PlaceOnGrid(const float* pixels, int64_t width, int64_t height,
                                int64_t channels, int64_t resolution, bool crop_to_content) {
  ImageRegion region;  // width 0: the whole image
  if (crop_to_content) {
    Result<ImageRegion> content = ContentRegion(pixels, width, height, channels);
    if (!content.ok()) return content.status();
    region = *content;
  }
  return MakeGridMapping(width, height, resolution, region);
}

torch::Tensor ImageTensor(const float* pixels, int64_t width, int64_t height, int64_t channels) {
  // from_blob only reads here: the clone is the tensor's own memory.
  return torch::from_blob(const_cast<float*>(pixels), {height, width, channels}, torch::kFloat32)
      .permute({2, 0, 1})
      .clone();
}

Result<torch::Tensor> ImageToGrid(const float* pixels, const GridMapping& m,
                                  const WindowOptions& window, int64_t channels) {
  if (pixels == nullptr) return InvalidArgument("no pixels");
  if (channels < 1) return InvalidArgument("channels must be >= 1");
  torch::Tensor image = ImageTensor(pixels, m.width, m.height, channels);
  if (!torch::isfinite(image).all().item<bool>()) {
    return InvalidArgument("image has NaN or infinite pixels");
  }
  image = RegionOf(image, m).contiguous();
  torch::Tensor flat = image.flatten();
  torch::Tensor sorted = std::get<0>(flat.sort());
  auto at = [&](double percentile) {
    auto i = static_cast<int64_t>(std::llround(percentile / 100.0 * (flat.numel() - 1)));
    return sorted[std::clamp<int64_t>(i, 0, flat.numel() - 1)].item<float>();
  };
  const float lo = at(window.low_percentile);
  const float hi = at(window.high_percentile);
  if (hi <= lo) {
    image.zero_();
  } else {
    // Halved first: the difference of two float32 extremes (+-3e38) overflows to infinity, and
    // infinity / infinity is NaN; halves cannot overflow, and halving is exact, so the quotient
    // is the same for every other image.
    image = ((image * 0.5f - lo * 0.5f) / (hi * 0.5f - lo * 0.5f)).clamp(0.0, 1.0);
  }
  torch::Tensor square = PadToSquare(image, m, 0.0).unsqueeze(0);
  torch::Tensor grid =
      F::interpolate(square, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{m.resolution, m.resolution})
                                 .mode(torch::kBilinear)
                                 .align_corners(false)
                                 .antialias(m.side > m.resolution));
  grid = grid.squeeze(0).clamp(0.0, 1.0).contiguous();
  // Whatever the arithmetic above missed must not reach the model (a NaN passes clamp).
  if (!torch::isfinite(grid).all().item<bool>()) {
    return InvalidArgument("preprocessing gave non-finite values");
  }
  return grid;
}

Result<torch::Tensor> ImageToModelGrid(const float* pixels, int64_t channels, const GridMapping& m,
                                       int64_t model_channels) {
  if (pixels == nullptr || channels != 3 || model_channels != 1) {
    return ImageToGrid(pixels, m, {}, channels);
  }
  // The weights sum to 1, so the gray value (and every partial sum) stays within the largest
  // channel value: finite for finite pixels.
  torch::Tensor rgb =
      torch::from_blob(const_cast<float*>(pixels), {m.height * m.width, 3}, torch::kFloat32);
  torch::Tensor gray =
      torch::mv(rgb, torch::tensor({kRec709[0], kRec709[1], kRec709[2]})).contiguous();
  return ImageToGrid(gray.data_ptr<float>(), m, {}, 1);
}

namespace {

// A class map of the mapping's region [h,w] padded to its square with `pad`, sampled at each grid
// cell's centre pixel (nearest neighbour): [R,R] int64.
torch::Tensor SampleCellCentres(const torch::Tensor& map, const GridMapping& m, double pad) {
  torch::Tensor square = PadToSquare(map.to(torch::kFloat32).unsqueeze(0), m, pad);
  torch::Tensor centres =
      ((torch::arange(m.resolution, torch::kFloat64) + 0.5) * m.side / m.resolution)
          .floor()
          .clamp(0, m.side - 1)
          .to(torch::kInt64);
  torch::Tensor grid = square[0].index_select(0, centres).index_select(1, centres);
  return grid.round().to(torch::kInt64).contiguous();
}

// The grid cell of each pixel coordinate (padded by `pad`), by the pixel's centre as
// GridMapping::ToGrid places it.
torch::Tensor CellOf(const torch::Tensor& pixels, int64_t pad, const GridMapping& m) {
  return ((pixels + pad).to(torch::kFloat64) + 0.5)
      .mul(static_cast<double>(m.resolution) / static_cast<double>(m.side))
      .floor()
      .clamp(0, m.resolution - 1)
      .to(torch::kInt64);
}

}  // namespace

Result<torch::Tensor> MaskToGrid(const int64_t* class_ids, const GridMapping& m) {
  if (class_ids == nullptr) return InvalidArgument("no mask");
  return SampleCellCentres(
      RegionOf(
          torch::from_blob(const_cast<int64_t*>(class_ids), {m.height, m.width}, torch::kInt64), m),
      m, 0.0);
}

Result<torch::Tensor> LabelMapToGrid(const int64_t* class_ids, const GridMapping& m) {
  if (class_ids == nullptr) return InvalidArgument("no label map");
  const torch::Tensor map = RegionOf(
      torch::from_blob(const_cast<int64_t*>(class_ids), {m.height, m.width}, torch::kInt64), m);
  const torch::Tensor labelled = map.ne(kUnknownClass);
  if (labelled.all().item<bool>()) return MaskToGrid(class_ids, m);
  try {
    // A cell no labelled pixel's centre falls in (an image smaller than the grid) keeps its
    // nearest pixel's label, or unknown; the others take the class most of those pixels have.
    torch::Tensor grid = SampleCellCentres(map, m, static_cast<double>(kUnknownClass));
    const torch::Tensor where = labelled.nonzero();  // [n, 2]: y, x
    if (where.size(0) == 0) return grid;
    const torch::Tensor classes = map.index({where.select(1, 0), where.select(1, 1)});
    const torch::Tensor cells = CellOf(where.select(1, 0), m.pad_y, m) * m.resolution +
                                CellOf(where.select(1, 1), m.pad_x, m);
    torch::Tensor counts = torch::zeros(
        {classes.max().item<int64_t>() + 1, m.resolution * m.resolution}, torch::kInt64);
    counts.index_put_({classes, cells}, torch::ones_like(classes), /*accumulate=*/true);
    const auto [count, best] = counts.max(0);
    return torch::where(count.gt(0), best, grid.flatten())
        .view({m.resolution, m.resolution})
        .contiguous();
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("placing a label map on the grid failed: ") + e.what());
  }
}

torch::Tensor CropToImage(const torch::Tensor& grid_maps, const GridMapping& m) {
  int64_t h_dim = grid_maps.dim() - 2;
  return grid_maps.slice(h_dim, m.GridY0(), m.GridY1()).slice(h_dim + 1, m.GridX0(), m.GridX1());
}

torch::Tensor PlaceInImage(const torch::Tensor& region_maps, const GridMapping& m, double fill) {
  if (!m.Cropped()) return region_maps;
  const int64_t right = m.width - m.region.x - m.region.width;
  const int64_t bottom = m.height - m.region.y - m.region.height;
  return F::pad(region_maps,
                F::PadFuncOptions({m.region.x, right, m.region.y, bottom}).value(fill));
}

torch::Tensor GridFromValues(const float* values, int64_t resolution, int64_t channels) {
  // from_blob only reads here: the clone is the tensor's own memory.
  return torch::from_blob(const_cast<float*>(values), {channels, resolution, resolution},
                          torch::kFloat32)
      .clone();
}

Result<torch::Tensor> MatchChannels(const torch::Tensor& image, int64_t channels) {
  if (!image.defined() || image.dim() < 3) {
    return InvalidArgument("an image must be [C,H,W] or [B,C,H,W] to change its channels");
  }
  const int64_t dim = image.dim() - 3;
  const int64_t have = image.size(dim);
  if (have == channels) return image;
  if (have == 1 && channels == 3) {
    std::vector<int64_t> sizes = image.sizes().vec();
    sizes[dim] = 3;
    return image.expand(sizes);
  }
  if (have == 3 && channels == 1) {
    std::vector<int64_t> shape(image.dim(), 1);
    shape[dim] = 3;
    torch::Tensor weights =
        torch::tensor({kRec709[0], kRec709[1], kRec709[2]}, image.options()).view(shape);
    return (image * weights).sum(dim, /*keepdim=*/true);
  }
  return InvalidArgument("an image of " + std::to_string(have) + " channels cannot be given to a " +
                         "model that takes " + std::to_string(channels) + " (1 gray or 3 RGB)");
}

}  // namespace clickdiff::model
