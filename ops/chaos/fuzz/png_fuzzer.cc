// Fuzz target: PNG bytes through the image codec (io/image_codec.h) in both colour modes, and the
// decoded image as a mask and as a partial label map (io/dataset_files.h): truncated, corrupt,
// oversized, palette, 1-16 bit, gray, RGB and alpha inputs must give an image or an error.
#include <cstddef>
#include <cstdint>

#include "io/dataset_files.h"
#include "io/image_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  clickdiff::ImageLimits limits;
  limits.max_width = limits.max_height = 2048;
  limits.max_pixels = 1 << 20;
  for (clickdiff::DecodeColor color :
       {clickdiff::DecodeColor::kGray, clickdiff::DecodeColor::kRgb}) {
    clickdiff::Result<clickdiff::Image> image =
        clickdiff::DecodePng(data, size, limits, "fuzz", color);
    if (!image.ok() || color != clickdiff::DecodeColor::kGray) continue;
    const clickdiff::NamedImage named{"fuzz.png", "fuzz.png", std::move(*image)};
    for (bool allow_unknown : {false, true}) {
      (void)clickdiff::MaskFromImage(named, 4, allow_unknown);
    }
  }
  return 0;
}
