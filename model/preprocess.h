// model/preprocess.h — from an image at its own size to the model's square grid and back.
//
// The model works on an R x R grid. An image of any size is windowed to [0,1] by robust
// percentiles (so 8-bit, 16-bit and float scanners look alike), padded to a centred square with
// zeros (aspect ratio kept: shapes are not squashed), and resized to R x R with an antialiased
// bilinear filter. Clicks and dense masks follow the same mapping; per-class maps computed on the
// grid (vote fractions) are cropped back to the image's region before they are resized to its size.
// Optionally only a region of the image goes on the grid (ContentRegion: the bounding box of what
// is not its dark frame, e.g. an ultrasound sector's surround), so the content gets every grid
// cell; what lies outside the region is background in every mask (but for a click's own pixel), and
// labels there are not seen.
//
// Free functions and a plain value type; no shared state, safe from any thread. Tensors are CPU.
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <utility>

#include "base/labels.h"
#include "base/status.h"

namespace clickdiff::model {

// A rectangle of an image's pixels: [x, x + width) x [y, y + height). Width 0: the whole image.
struct ImageRegion {
  int64_t x = 0;
  int64_t y = 0;
  int64_t width = 0;
  int64_t height = 0;
};

// Where an image of width x height sits on the model grid.
struct GridMapping {
  int64_t width = 0;  // the image's own size
  int64_t height = 0;
  ImageRegion region;      // the part of it on the grid (the whole image unless cropped)
  int64_t resolution = 0;  // R
  int64_t side = 0;        // max(region.width, region.height): the padded square, in pixels
  int64_t pad_x = 0;       // left/top offset of the region inside the square, in image pixels
  int64_t pad_y = 0;

  // Whether only a part of the image is on the grid.
  bool Cropped() const { return region.width != width || region.height != height; }
  // The grid cell (column, row) that holds image pixel (x, y); a pixel outside the region takes
  // the nearest cell of the region's edge. Precondition: inside the image.
  std::pair<int64_t, int64_t> ToGrid(int64_t x, int64_t y) const;
  // Grid cells covered by the region: [x0, x1) x [y0, y1), at least one cell each way.
  int64_t GridX0() const;
  int64_t GridX1() const;
  int64_t GridY0() const;
  int64_t GridY1() const;
};

// `region`: the part of the image to place on the grid (width 0: all of it). Errors:
// kInvalidArgument for a non-positive size or resolution, or a region not inside the image.
Result<GridMapping> MakeGridMapping(int64_t width, int64_t height, int64_t resolution,
                                    const ImageRegion& region = {});

// How ContentRegion finds an image's content.
struct ContentOptions {
  // A sample is content when it (its brightest channel) exceeds the image's darkest sample by more
  // than this share of the image's range (its 99.5th percentile minus the darkest sample).
  double threshold = 0.05;
  double margin = 0.02;  // of the image's larger side, added around the content on each side
  // Content is the connected parts of those samples (on blocks of ceil(side / 256) pixels, joined
  // across gaps of up to two blocks) at least this share of the largest part's size: a caption or
  // a ruler in the frame is not.
  double min_part_share = 0.1;
  // The region is used only when it leaves out at least this share of the image's area; a crop
  // that saves less is not worth moving the image's pixels.
  double min_saving = 0.1;
};

// The bounding box of an image's content: its parts brighter than its dark frame (ContentOptions),
// with a margin; the whole image (width 0) when that saves too little or the image is flat. Pixels
// as ImageToGrid's, finite. Errors: kInvalidArgument for no pixels, a non-positive size or channels
// < 1.
Result<ImageRegion> ContentRegion(const float* pixels, int64_t width, int64_t height,
                                  int64_t channels, const ContentOptions& options = {});

// Where an image goes on the grid: all of it, or (`crop_to_content`) its ContentRegion. Pixels as
// ContentRegion's. Errors: those of ContentRegion and MakeGridMapping.
Result<GridMapping> PlaceOnGrid(const float* pixels, int64_t width, int64_t height,
                                int64_t channels, int64_t resolution, bool crop_to_content);

struct WindowOptions {
  double low_percentile = 0.5;    // intensities at or below map to 0
  double high_percentile = 99.5;  // at or above map to 1
};

// Rec. 709 luma weights of R, G and B: how colour becomes gray.
inline constexpr std::array<float, 3> kRec709{0.2126f, 0.7152f, 0.0722f};

// Row-major pixels (width*height*channels floats, channels interleaved; `pixels` holds that many)
// -> [C,H,W] float32, the same values at the image's own size (its own memory).
torch::Tensor ImageTensor(const float* pixels, int64_t width, int64_t height, int64_t channels);

// Row-major pixels (width*height*channels floats, channels interleaved, any units; `pixels` holds
// that many) -> [C,R,R] float32 in [0,1] on the grid: the mapping's region of them. All channels
// share one window (the percentiles of all the region's samples), so colours keep their balance. A
// constant image maps to zeros. Any finite pixels give a finite grid (float32's extremes, +-3e38,
// included). Errors: kInvalidArgument for no pixels, channels < 1, a non-finite pixel or (a guard)
// a non-finite result.
Result<torch::Tensor> ImageToGrid(const float* pixels, const GridMapping& mapping,
                                  const WindowOptions& window = {}, int64_t channels = 1);

// ImageToGrid for a model that takes `model_channels` image channels: a colour image (channels 3)
// for a gray model (1) is made gray (kRec709) before it is windowed, so it gets the contrast a gray
// file of it would; otherwise the image keeps its own channels (a gray image is repeated for an
// RGB model when it is read, by MatchChannels, which is exact). Errors: those of ImageToGrid.
Result<torch::Tensor> ImageToModelGrid(const float* pixels, int64_t channels,
                                       const GridMapping& mapping, int64_t model_channels);

// A grid as stored (C*R*R floats, channel-major, ImageToGrid's output) -> [C,R,R] float32 tensor
// of its own (the values are copied). The caller has checked there are C*R*R values.
torch::Tensor GridFromValues(const float* values, int64_t resolution, int64_t channels = 1);

// An image [C,H,W] (or a batch [B,C,H,W]) with the channel count a model takes: unchanged when C
// is `channels`; gray repeated into R, G and B for 3 (a view: no copy); RGB to gray with the
// kRec709 weights for 1 (the colour's window is kept, so it has less contrast than
// ImageToModelGrid gives). Errors: kInvalidArgument for any other pair.
Result<torch::Tensor> MatchChannels(const torch::Tensor& image, int64_t channels);

// Row-major class ids (width*height) -> [R,R] int64 on the grid, nearest neighbour; padding is
// background. Errors: kInvalidArgument for a size mismatch.
Result<torch::Tensor> MaskToGrid(const int64_t* class_ids, const GridMapping& mapping);

// A label map (row-major class ids, width*height) -> [R,R] int64 on the grid. Without a
// kUnknownClass pixel (base/labels.h) it is a mask: MaskToGrid. With one it is a partial label
// (scribbles), whose thin strokes nearest-neighbour sampling would break: a cell takes the class
// most of the labelled pixels whose centre falls in it have; a cell with none (an image smaller
// than the grid) its centre pixel's label, or kUnknownClass; the padding is unknown. The caller
// has checked the ids are in [0, kUnknownClass]. Errors: kInvalidArgument for no map, or ids out
// of that range.
Result<torch::Tensor> LabelMapToGrid(const int64_t* class_ids, const GridMapping& mapping);

// Per-class maps on the grid [K,R,R] (or [B,K,R,R]) -> the part covering the mapping's region, at
// grid resolution; resize it to (region.height, region.width), then PlaceInImage, to get back to
// the image's own size.
torch::Tensor CropToImage(const torch::Tensor& grid_maps, const GridMapping& mapping);

// Maps [..., region.height, region.width] -> [..., height, width]: the region's values in place,
// `fill` around them. The same tensor when the mapping is not cropped.
torch::Tensor PlaceInImage(const torch::Tensor& region_maps, const GridMapping& mapping,
                           double fill);

}  // namespace clickdiff::model
