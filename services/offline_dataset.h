// services/offline_dataset.h — a dataset in the interchange formats (DESIGN.md), loaded for the
// offline commands: images placed on the model grid, clicks and masks mapped the same way.
//
// Everything is read and validated before any model work starts, so a bad file stops the command
// with a message naming the file (and line) instead of failing half-way through training.
// Plain values; one owner.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "io/dataset_files.h"
#include "model/aggregator.h"
#include "model/preprocess.h"
#include "model/training_example.h"

namespace clickdiff {

struct OfflineImage {
  std::string name;            // file name, e.g. "a.png"
  model::GridMapping mapping;  // its own size and place on the grid
  torch::Tensor grid_image;    // [C,R,R] float in [0,1]; C: 1 gray, 3 colour
  torch::Tensor pixels;        // [C,H,W] float, the image at its own size, file units (keep_pixels)
  std::vector<model::Click> clicks;       // its clicks, in its own pixels
  std::vector<model::Click> grid_clicks;  // the same in grid cells
  // [R,R] int64 when a mask or a partial label map (scribbles: kUnknownClass on unmarked cells)
  // was given, else undefined.
  torch::Tensor grid_mask;
  bool partial_mask = false;  // grid_mask is a partial label map
  torch::Tensor native_mask;  // [H,W] int64 when a (full) mask was given, else undefined
};

struct OfflineDatasetSpec {
  std::string images_dir;
  std::string clicks_file;  // optional
  std::string masks_dir;    // optional
  // Optional: partial label maps (scribbles: class ids, 255 unknown) for any of the images; an
  // image with a mask keeps the mask.
  std::string scribbles_dir;
  int num_classes = 2;
  int resolution = 64;
  bool crop_to_content = false;  // each image's content alone on the grid (model::ContentRegion)
  bool require_all_masks = true;
  ImageLimits limits;
  // The channels of every grid_image: a model's image_channels (1 or 3), or 0: 3 when any image
  // has colour, else 1.
  int64_t image_channels = 0;
  // Keep each image's own pixels (OfflineImage::pixels), which the aggregator snaps masks to.
  bool keep_pixels = false;
};

// Reads images (colour kept), clicks and masks and maps them onto the grid, every image with the
// spec's channels (model::ImageToModelGrid, then MatchChannels). Errors: those of
// io/dataset_files.h (naming file and line) and of the grid mapping (naming the image).
Result<std::vector<OfflineImage>> LoadOfflineDataset(const OfflineDatasetSpec& spec);

// Training examples: an image with a mask gives a dense example (full supervision); otherwise an
// image with a partial label map a partial example with its clicks on top; otherwise an image with
// clicks a click-map example (paper 000); an image with none of them gives none.
Result<std::vector<model::TrainingExample>> MakeTrainingExamples(
    const std::vector<OfflineImage>& images, int num_classes);

// Aggregates an image's samples [N,R,R] (drawn on its grid) into a mask and an uncertainty map at
// the image's own size. Errors name the image.
Result<model::Aggregation> AggregateOnImage(const model::Aggregator& aggregator,
                                            const torch::Tensor& samples,
                                            const OfflineImage& image);

}  // namespace clickdiff
