// Fuzz target: raw float32 pixels through the image codec (io/image_codec.h). The first three bytes
// give width and height (0-63: zero must be refused) and channels (1-4: only 1 and 3 exist), the
// rest is the payload: sizes that do not match, NaN and infinite values must give an error.
#include <cstddef>
#include <cstdint>

#include "io/image_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const int width = data[0] % 64;
  const int height = data[1] % 64;
  const int channels = 1 + data[2] % 4;
  for (clickdiff::DecodeColor color :
       {clickdiff::DecodeColor::kGray, clickdiff::DecodeColor::kRgb}) {
    (void)clickdiff::DecodeRawFloat32(data + 3, size - 3, width, height, channels, {}, "fuzz",
                                      color);
  }
  return 0;
}
