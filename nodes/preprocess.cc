#include "nodes/preprocess.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <new>
#include <string_view>

#include "base/clock.h"
#include "model/preprocess.h"

namespace clickdiff {

Preprocess::Preprocess(int64_t resolution, const ModelSlot* models, bool crop_to_content)
    : resolution_(resolution), models_(models), crop_to_content_(crop_to_content) {}

Decoded Preprocess::operator()(Decoded decoded) const {
  auto* record = std::get_if<ImageRecord>(&decoded.event);
  if (record == nullptr) return decoded;
  try {
    const v1::ImageEvent& event = record->stored.event();
    std::shared_ptr<const ServingModel> served = models_ != nullptr ? models_->Get() : nullptr;
    const bool has_model = served != nullptr && served->segmenter != nullptr;
    const int64_t model_channels =
        has_model ? served->segmenter->options().unet.image_channels : record->channels;
    const bool crop = has_model ? served->segmenter->options().crop_to_content : crop_to_content_;
    Result<model::GridMapping> mapping = model::PlaceOnGrid(
        record->pixels.data(), event.width(), event.height(), record->channels, resolution_, crop);
    Result<torch::Tensor> grid =
        mapping.ok() ? model::ImageToModelGrid(record->pixels.data(), record->channels, *mapping,
                                               model_channels)
                     : mapping.status();
    if (!grid.ok()) {
      decoded.event = Rejected{"preprocess: " + grid.status().message()};
      return decoded;
    }
    torch::Tensor values = grid->contiguous();
    record->stored.set_grid_resolution(static_cast<uint32_t>(resolution_));
    record->stored.set_grid_channels(static_cast<uint32_t>(values.size(0)));
    if (mapping->Cropped()) {
      record->stored.set_region_x(static_cast<uint32_t>(mapping->region.x));
      record->stored.set_region_y(static_cast<uint32_t>(mapping->region.y));
      record->stored.set_region_width(static_cast<uint32_t>(mapping->region.width));
      record->stored.set_region_height(static_cast<uint32_t>(mapping->region.height));
    }
    record->stored.mutable_grid()->Assign(values.data_ptr<float>(),
                                          values.data_ptr<float>() + values.numel());
    record->stored.set_received_ms(NowMs());
    record->pixels = {};
  } catch (const std::exception& e) {
    // Out of memory is not the image's fault: LibTorch reports it as c10::OutOfMemoryError (GPU)
    // or a c10::Error saying so (its CPU allocator), the rest of C++ as std::bad_alloc.
    const bool out_of_memory =
        dynamic_cast<const std::bad_alloc*>(&e) != nullptr ||
        dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
        (dynamic_cast<const c10::Error*>(&e) != nullptr &&
         std::string_view(e.what()).find("not enough memory") != std::string_view::npos);
    if (out_of_memory) {
      decoded.failure = ResourceExhausted("out of memory preprocessing " + decoded.source.topic +
                                          "@" + std::to_string(decoded.source.offset));
    } else {
      decoded.event = Rejected{std::string("preprocess failed: ") + e.what()};
    }
  }
  return decoded;
}

}  // namespace clickdiff
