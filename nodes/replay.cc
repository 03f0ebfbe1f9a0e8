#include "nodes/replay.h"

#include "model/preprocess.h"
#include "nodes/keys.h"
#include "schemas/events.pb.h"

namespace clickdiff {
namespace {

// The newest dense training label of an image as an [R,R] class map, or an undefined tensor.
Result<torch::Tensor> DenseLabel(const Store& store, const std::string& image_key,
                                 const GridMapping& mapping, uint64_t& labels) {
  std::vector<int64_t> ids;
  Status failed = Status::Ok();
  Status scanned = store.Scan(
      Family::kLabels, keys::Under(image_key), [&](std::string_view, std::string_view value) {
        v1::LabelEvent label;
        if (!label.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          failed = DataLoss("a stored label of " + image_key + " is corrupt");
          return false;
        }
        if (label.for_evaluation() || !label.has_dense()) return true;
        const std::string& bytes = label.dense().class_ids();
        if (static_cast<int64_t>(bytes.size()) != mapping.width * mapping.height) {
          failed = InvalidArgument("label " + label.label_id() + " does not fit its image");
          return false;
        }
        ids.assign(bytes.begin(), bytes.end());
        for (int64_t& id : ids) id = static_cast<unsigned char>(id);
        ++labels;
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  CLICKDIFF_RETURN_IF_ERROR(failed);
  if (ids.empty()) return torch::Tensor();
  Result<torch::Tensor> grid = MaskToGrid(ids.data(), mapping);
  if (!grid.ok()) return grid.status();
  return grid->clone();
}

}  // namespace

Result<Replay> LoadReplay(const Store& store, int64_t resolution, int64_t num_classes) {
  Replay replay;
  Status failed = Status::Ok();
  auto fail = [&](Status s) {
    failed = std::move(s);
    return false;
  };
  Status scanned =
      store.Scan(Family::kImages, "", [&](std::string_view key, std::string_view value) {
        const std::string image_key(key);
        v1::StoredImage stored;
        if (!stored.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return fail(DataLoss("the stored record of image " + image_key + " is corrupt"));
        }
        if (stored.grid_resolution() != resolution ||
            stored.grid_size() != resolution * resolution) {
          return true;
        }
        const v1::ImageEvent& event = stored.event();
        Result<GridMapping> mapping = MakeGridMapping(event.width(), event.height(), resolution);
        if (!mapping.ok()) return fail(mapping.status().WithContext(event.image_id()));

        std::vector<model::Click> clicks;
        Status clicks_read = store.Scan(
            Family::kClicks, keys::Under(image_key), [&](std::string_view, std::string_view c) {
              v1::ClickEvent click;
              if (!click.ParseFromArray(c.data(), static_cast<int>(c.size()))) {
                failed = DataLoss("a stored click of image " + event.image_id() + " is corrupt");
                return false;
              }
              auto [gx, gy] = mapping->ToGrid(click.x(), click.y());
              clicks.push_back(model::Click{gx, gy, click.class_id(), click.positive()});
              return true;
            });
        if (!clicks_read.ok()) return fail(clicks_read);
        if (!failed.ok()) return false;
        uint64_t labels = 0;
        Result<torch::Tensor> mask = DenseLabel(store, image_key, *mapping, labels);
        if (!mask.ok()) return fail(mask.status().WithContext(event.image_id()));

        torch::Tensor grid = torch::from_blob(stored.mutable_grid()->mutable_data(),
                                              {1, resolution, resolution}, torch::kFloat32)
                                 .clone();
        Result<std::optional<model::TrainingExample>> example =
            model::MakeSupervisedExample(grid, clicks, *mask, num_classes);
        if (!example.ok()) return fail(example.status().WithContext(event.image_id()));
        if (!example->has_value()) return true;
        replay.clicks += clicks.size();
        replay.labels += labels;
        replay.examples.push_back(
            ReplayExample{image_key, clicks.size() + labels, std::move(**example)});
        return true;
      });
  CLICKDIFF_RETURN_IF_ERROR(scanned);
  CLICKDIFF_RETURN_IF_ERROR(failed);
  return replay;
}

}  // namespace clickdiff
