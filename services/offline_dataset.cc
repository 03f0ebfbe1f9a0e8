#include "services/offline_dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "base/labels.h"
#include "model/click_guidance.h"

namespace clickdiff {

Result<std::vector<OfflineImage>> LoadOfflineDataset(const OfflineDatasetSpec& spec) {
  Result<std::vector<NamedImage>> images =
      ReadImageDirectory(spec.images_dir, spec.limits, DecodeColor::kRgb);
  if (!images.ok()) return images.status();

  std::map<std::string, std::vector<Click>> clicks_by_image;
  if (!spec.clicks_file.empty()) {
    ClickFileOptions click_options;
    click_options.num_classes = spec.num_classes;
    Result<std::vector<Click>> clicks = ReadClicksFile(spec.clicks_file, click_options);
    if (!clicks.ok()) return clicks.status();
    CLICKDIFF_RETURN_IF_ERROR(ValidateClicks(*clicks, *images));
    for (const Click& c : *clicks) clicks_by_image[c.image].push_back(c);
  }

  // Masks first: where an image has both, its mask wins over its scribbles.
  std::map<std::string, const NamedMask*> mask_by_image;
  std::vector<NamedMask> masks, scribbles;
  for (const auto& [dir, read_into, partial] : {std::tuple{spec.masks_dir, &masks, false},
                                                std::tuple{spec.scribbles_dir, &scribbles, true}}) {
    if (dir.empty()) continue;
    MaskDirectoryOptions mask_options;
    mask_options.num_classes = spec.num_classes;
    mask_options.require_all = spec.require_all_masks && !partial;
    mask_options.allow_unknown = partial;
    mask_options.limits = spec.limits;
    Result<std::vector<NamedMask>> read = ReadMaskDirectory(dir, *images, mask_options);
    if (!read.ok()) return read.status();
    *read_into = std::move(read).value();
    for (const NamedMask& m : *read_into) mask_by_image.emplace(m.name, &m);
  }

  int64_t channels = spec.image_channels;
  if (channels == 0) {
    channels = 1;
    for (const NamedImage& named : *images)
      channels = std::max<int64_t>(channels, named.image.channels);
  }
  std::vector<OfflineImage> out;
  out.reserve(images->size());
  for (const NamedImage& named : *images) {
    const Image& image = named.image;
    OfflineImage item;
    item.name = named.name;
    Result<model::GridMapping> mapping =
        model::PlaceOnGrid(image.pixels.data(), image.width, image.height, image.channels,
                           spec.resolution, spec.crop_to_content);
    if (!mapping.ok()) return mapping.status().WithContext(named.path);
    item.mapping = *mapping;
    Result<torch::Tensor> grid =
        model::ImageToModelGrid(image.pixels.data(), image.channels, item.mapping, channels);
    if (grid.ok()) grid = model::MatchChannels(*grid, channels);
    if (!grid.ok()) return grid.status().WithContext(named.path);
    item.grid_image = grid->contiguous();
    if (spec.keep_pixels) {
      item.pixels =
          model::ImageTensor(image.pixels.data(), image.width, image.height, image.channels);
    }
    for (const Click& c : clicks_by_image[named.name]) {
      item.clicks.push_back(model::Click{c.x, c.y, c.class_id, c.positive});
    }
    item.grid_clicks = model::ClicksToGrid(item.clicks, item.mapping);
    auto mask = mask_by_image.find(named.name);
    if (mask != mask_by_image.end()) {
      const NamedMask& m = *mask->second;
      Result<torch::Tensor> grid_mask = model::LabelMapToGrid(m.class_ids.data(), item.mapping);
      if (!grid_mask.ok()) return grid_mask.status().WithContext(m.path);
      const bool partial = HoldsUnknown(m.class_ids);
      // Scribbles that all lie outside the image's cropped region mark nothing the model sees:
      // the image trains from its clicks, if any.
      if (partial && !grid_mask->ne(kUnknownClass).any().item<bool>()) {
        spdlog::warn("{}: every scribble lies outside the image's content region; not used",
                     m.path);
        out.push_back(std::move(item));
        continue;
      }
      item.partial_mask = partial;
      item.grid_mask = *grid_mask;
      if (!item.partial_mask) {
        item.native_mask = torch::tensor(m.class_ids, torch::kInt64).view({m.height, m.width});
      }
    }
    out.push_back(std::move(item));
  }
  return out;
}

Result<std::vector<model::TrainingExample>> MakeTrainingExamples(
    const std::vector<OfflineImage>& images, int num_classes) {
  std::vector<model::TrainingExample> examples;
  for (const OfflineImage& image : images) {
    Result<std::optional<model::TrainingExample>> example = model::MakeSupervisedExample(
        image.grid_image, image.grid_clicks, image.grid_mask, num_classes, image.partial_mask);
    if (!example.ok()) return example.status().WithContext(image.name);
    if (example->has_value()) examples.push_back(std::move(**example));
  }
  return examples;
}

Result<model::Aggregation> AggregateOnImage(const model::Aggregator& aggregator,
                                            const torch::Tensor& samples,
                                            const OfflineImage& image) {
  Result<model::Aggregation> a = aggregator.AggregateOnImage(samples, image.mapping, image.clicks,
                                                             image.grid_image, image.pixels);
  if (!a.ok()) return a.status().WithContext(image.name);
  return a;
}

}  // namespace clickdiff
