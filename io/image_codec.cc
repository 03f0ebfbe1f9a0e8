#include "io/image_codec.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <new>

namespace clickdiff {
namespace {

// ---- libpng error handling -------------------------------------------------------------------
//
// libpng reports errors by calling an error callback that must not return; we record the message
// and longjmp back to the setjmp in the Run*Png functions below. To keep that well defined, the
// frames between setjmp and longjmp are libpng's own (C) frames and the Run*Png function itself,
// which creates no object with a destructor after its setjmp: every buffer it fills lives in a
// state struct owned by the caller, and the png structs are freed by an RAII guard in the caller.

struct PngErrorState {
  char message[512] = {0};
  bool truncated = false;    // set by our read callback when the input ran out
  size_t refused_bytes = 0;  // the largest allocation PngMalloc refused
};

// The most libpng may allocate at once while reading. Its own buffers are rows (under 128 KiB at
// the largest image side), zlib's state and ancillary chunks read whole (text, ICC profiles,
// suggested palettes); pixels go to our buffers. Without this cap, a chunk header claiming 1.9 GB
// in a 64-byte file made libpng allocate that much (found by ops/chaos/fuzz.sh): its own chunk
// limit (8 MB in Debian's build) is only a warning when reading, and the chunk buffer is allocated
// regardless. A refused ancillary chunk is skipped with a warning; a refused critical one fails.
constexpr size_t kMaxPngAllocation = size_t{8} << 20;

png_voidp PngMalloc(png_structp png, png_alloc_size_t size) {
  if (size > kMaxPngAllocation) {
    auto* state = static_cast<PngErrorState*>(png_get_mem_ptr(png));
    if (state != nullptr) state->refused_bytes = std::max<size_t>(state->refused_bytes, size);
    return nullptr;
  }
  return std::malloc(size);
}

void PngFree(png_structp /*png*/, png_voidp p) { std::free(p); }

[[noreturn]] void PngErrorFn(png_structp png, png_const_charp msg) {
  auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
  if (state != nullptr && state->message[0] == '\0') {
    std::snprintf(state->message, sizeof(state->message), "%s", msg != nullptr ? msg : "error");
  }
  png_longjmp(png, 1);
}

void PngWarningFn(png_structp /*png*/, png_const_charp /*msg*/) {}

// Input for the memory read callback.
struct PngSource {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t offset = 0;
  PngErrorState* errors = nullptr;
};

void PngReadFn(png_structp png, png_bytep out, size_t length) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (length > src->size - src->offset) {
    src->errors->truncated = true;
    std::snprintf(src->errors->message, sizeof(src->errors->message),
                  "truncated PNG data (needed %zu bytes at offset %zu of %zu)", length, src->offset,
                  src->size);
    png_error(png, src->errors->message);
  }
  std::memcpy(out, src->data + src->offset, length);
  src->offset += length;
}

void DestroyRead(png_structp* png, png_infop* info) { png_destroy_read_struct(png, info, nullptr); }
void DestroyWrite(png_structp* png, png_infop* info) { png_destroy_write_struct(png, info); }

// Owns a png_struct and its png_info (either may be null) and frees them on scope exit with
// `Destroy` (png_destroy_read_struct or png_destroy_write_struct).
template <void (*Destroy)(png_structp*, png_infop*)>
class PngGuard {
 public:
  explicit PngGuard(png_structp png) : png_(png) {}
  ~PngGuard() {
    if (png_ != nullptr) Destroy(&png_, &info_);
  }
  PngGuard(const PngGuard&) = delete;
  PngGuard& operator=(const PngGuard&) = delete;
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }
  void set_info(png_infop info) { info_ = info; }

 private:
  png_structp png_;
  png_infop info_ = nullptr;
};
using PngReadGuard = PngGuard<DestroyRead>;
using PngWriteGuard = PngGuard<DestroyWrite>;

// Everything the read function produces; owned by the caller so a longjmp leaks nothing.
struct PngReadOutput {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 0;      // source bit depth
  int color_type = 0;     // source colour type
  int out_bit_depth = 0;  // after transforms: 8 or 16
  int out_channels = 0;   // after transforms: 1, or 3 when colour is kept
  bool over_limit = false;
  std::vector<uint8_t> raw;  // transformed rows
  std::vector<png_bytep> rows;
};

int64_t LimitOrMax(int64_t limit) { return limit > 0 ? limit : INT64_MAX; }

// Returns false after a libpng error (message in the error state). No destructible locals.
bool RunPngRead(png_structp png, png_infop info, const ImageLimits* limits, bool keep_color,
                PngReadOutput* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->bit_depth = png_get_bit_depth(png, info);
  out->color_type = png_get_color_type(png, info);
  const int64_t w = out->width;
  const int64_t h = out->height;
  if (w > LimitOrMax(limits->max_width) || h > LimitOrMax(limits->max_height) ||
      w * h > LimitOrMax(limits->max_pixels)) {
    out->over_limit = true;
    return true;
  }
  if (out->color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (out->color_type == PNG_COLOR_TYPE_GRAY && out->bit_depth < 8) png_set_packing(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if ((out->color_type & PNG_COLOR_MASK_ALPHA) != 0 || png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_set_strip_alpha(png);
  }
  const bool color = (out->color_type & PNG_COLOR_MASK_COLOR) != 0;
  if (color && !keep_color) png_set_rgb_to_gray_fixed(png, /*error_action=*/1, -1, -1);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->out_channels = png_get_channels(png, info);
  if (out->out_channels != (color && keep_color ? 3 : 1)) {
    png_error(png, "unsupported PNG layout after the colour transforms");
  }
  out->out_bit_depth = png_get_bit_depth(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  out->raw.resize(row_bytes * out->height);
  out->rows.resize(out->height);
  for (png_uint_32 y = 0; y < out->height; ++y) out->rows[y] = out->raw.data() + y * row_bytes;
  png_read_image(png, out->rows.data());
  png_read_end(png, nullptr);
  return true;
}

// Like PngReadOutput for the writer.
struct PngWriteOutput {
  std::vector<uint8_t> bytes;
  std::vector<png_bytep> rows;
};

void PngWriteFn(png_structp png, png_bytep data, size_t length) {
  auto* out = static_cast<PngWriteOutput*>(png_get_io_ptr(png));
  out->bytes.insert(out->bytes.end(), data, data + length);
}
void PngFlushFn(png_structp /*png*/) {}

// `rows` must point into caller-owned memory. No destructible locals.
bool RunPngWrite(png_structp png, png_infop info, int width, int height, int bit_depth,
                 int color_type, PngWriteOutput* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, PngWriteFn, PngFlushFn);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height),
               bit_depth, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, out->rows.data());
  png_write_end(png, nullptr);
  return true;
}

// Encodes big-endian sample rows already laid out in `raw` (`channels` 1: gray, 3: RGB).
Result<std::vector<uint8_t>> EncodeRows(std::vector<uint8_t> raw, int width, int height,
                                        int bit_depth, int channels) {
  PngErrorState errors;
  PngWriteGuard guard(
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &errors, PngErrorFn, PngWarningFn));
  if (guard.png() == nullptr) return Internal("png_create_write_struct failed");
  guard.set_info(png_create_info_struct(guard.png()));
  if (guard.info() == nullptr) return Internal("png_create_info_struct failed");
  PngWriteOutput out;
  const size_t row_bytes = static_cast<size_t>(width) * channels * (bit_depth / 8);
  out.rows.resize(height);
  for (int y = 0; y < height; ++y) out.rows[y] = raw.data() + y * row_bytes;
  const int color_type = channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY;
  if (!RunPngWrite(guard.png(), guard.info(), width, height, bit_depth, color_type, &out)) {
    return Internal(std::string("PNG encoding failed: ") + errors.message);
  }
  return std::move(out.bytes);
}

Status CheckShape(size_t count, int width, int height, int channels = 1) {
  if (width <= 0 || height <= 0) {
    return InvalidArgument("image size must be positive, got " + std::to_string(width) + "x" +
                           std::to_string(height));
  }
  if (count != static_cast<size_t>(width) * static_cast<size_t>(height) * channels) {
    return InvalidArgument("sample count " + std::to_string(count) + " does not match " +
                           std::to_string(width) + "x" + std::to_string(height) +
                           (channels > 1 ? "x" + std::to_string(channels) : std::string()));
  }
  return Status::Ok();
}

Status CheckLimits(int64_t width, int64_t height, const ImageLimits& limits,
                   const std::string& name) {
  auto fail = [&](const char* what, int64_t value, int64_t limit) {
    return ResourceExhausted(name + ": image " + std::to_string(width) + "x" +
                             std::to_string(height) + " exceeds " + what + " (" +
                             std::to_string(value) + " > " + std::to_string(limit) + ")");
  };
  if (width > LimitOrMax(limits.max_width)) return fail("max_width", width, limits.max_width);
  if (height > LimitOrMax(limits.max_height)) {
    return fail("max_height", height, limits.max_height);
  }
  if (width * height > LimitOrMax(limits.max_pixels)) {
    return fail("max_pixels", width * height, limits.max_pixels);
  }
  return Status::Ok();
}

}  // namespace

float Image::NominalMax() const {
  if (pixel_type == PixelType::kFloat32) return 1.0f;
  return static_cast<float>((int64_t{1} << bit_depth) - 1);
}

Result<Image> DecodePng(const uint8_t* data, size_t size, const ImageLimits& limits,
                        const std::string& name, DecodeColor color) {
  constexpr size_t kSignatureBytes = 8;
  if (data == nullptr || size < kSignatureBytes || png_sig_cmp(data, 0, kSignatureBytes) != 0) {
    return InvalidArgument(name + ": not a PNG file (missing or bad PNG signature, " +
                           std::to_string(size) + " bytes)");
  }
  PngErrorState errors;
  PngReadGuard guard(png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &errors, PngErrorFn,
                                              PngWarningFn, &errors, PngMalloc, PngFree));
  if (guard.png() == nullptr) return Internal(name + ": png_create_read_struct failed");
  guard.set_info(png_create_info_struct(guard.png()));
  if (guard.info() == nullptr) return Internal(name + ": png_create_info_struct failed");
  PngSource source{data, size, 0, &errors};
  png_set_read_fn(guard.png(), &source, PngReadFn);

  PngReadOutput out;
  if (!RunPngRead(guard.png(), guard.info(), &limits, color == DecodeColor::kRgb, &out)) {
    std::string why = name + ": " + (errors.truncated ? "" : "corrupt PNG: ") + errors.message;
    if (errors.refused_bytes > 0) {
      why += " (a chunk asked for " + std::to_string(errors.refused_bytes) +
             " bytes; one allocation may take at most " + std::to_string(kMaxPngAllocation) + ")";
    }
    return DataLoss(why);
  }
  if (out.over_limit) return CheckLimits(out.width, out.height, limits, name);

  Image image;
  image.width = static_cast<int>(out.width);
  image.height = static_cast<int>(out.height);
  image.channels = out.out_channels;
  switch (out.color_type) {
    case PNG_COLOR_TYPE_GRAY:
      image.source_channels = 1;
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      image.source_channels = 2;
      break;
    case PNG_COLOR_TYPE_RGB:
      image.source_channels = 3;
      break;
    case PNG_COLOR_TYPE_RGB_ALPHA:
      image.source_channels = 4;
      break;
    case PNG_COLOR_TYPE_PALETTE:
      image.source_channels = 3;
      break;
    default:
      image.source_channels = 1;
      break;
  }
  const size_t count = static_cast<size_t>(out.width) * out.height * out.out_channels;
  image.pixels.resize(count);
  if (out.out_bit_depth == 16) {
    image.pixel_type = PixelType::kUint16;
    image.bit_depth = 16;
    for (size_t i = 0; i < count; ++i) {
      image.pixels[i] = static_cast<float>((out.raw[2 * i] << 8) | out.raw[2 * i + 1]);
    }
  } else {
    image.pixel_type = PixelType::kUint8;
    // Palette images are expanded to 8-bit RGB; low-depth gray keeps its own units (packing only).
    image.bit_depth = out.color_type == PNG_COLOR_TYPE_PALETTE ? 8 : out.bit_depth;
    for (size_t i = 0; i < count; ++i) image.pixels[i] = static_cast<float>(out.raw[i]);
  }
  return image;
}

Result<Image> DecodePng(const std::vector<uint8_t>& bytes, const ImageLimits& limits,
                        const std::string& name, DecodeColor color) {
  return DecodePng(bytes.data(), bytes.size(), limits, name, color);
}

Result<std::vector<uint8_t>> ReadBinaryFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open file for reading");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) return DataLoss(path + ": read error");
  return bytes;
}

Status WriteBinaryFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable(path + ": cannot open file for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return Unavailable(path + ": write failed");
  return Status::Ok();
}

Result<Image> ReadPngFile(const std::string& path, const ImageLimits& limits, DecodeColor color) {
  Result<std::vector<uint8_t>> bytes = ReadBinaryFile(path);
  if (!bytes.ok()) return bytes.status();
  return DecodePng(*bytes, limits, path, color);
}

Result<Image> DecodeRawFloat32(const uint8_t* data, size_t size, int width, int height,
                               int channels, const ImageLimits& limits, const std::string& name,
                               DecodeColor color) {
  if (width <= 0 || height <= 0 || channels < 1 || channels > 4) {
    return InvalidArgument(name + ": bad raw float32 shape width=" + std::to_string(width) +
                           " height=" + std::to_string(height) + " channels=" +
                           std::to_string(channels) + " (need positive sizes, channels 1..4)");
  }
  CLICKDIFF_RETURN_IF_ERROR(CheckLimits(width, height, limits, name));
  const size_t values = static_cast<size_t>(width) * height * channels;
  if (size != values * sizeof(float)) {
    return InvalidArgument(name + ": raw float32 " + std::to_string(width) + "x" +
                           std::to_string(height) + "x" + std::to_string(channels) + " needs " +
                           std::to_string(values * sizeof(float)) + " bytes, got " +
                           std::to_string(size));
  }
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels >= 3 && color == DecodeColor::kRgb ? 3 : 1;
  image.source_channels = channels;
  image.pixel_type = PixelType::kFloat32;
  image.bit_depth = 32;
  const size_t pixels = static_cast<size_t>(width) * height;
  image.pixels.resize(pixels * image.channels);
  std::vector<float> px(channels);
  for (size_t i = 0; i < pixels; ++i) {
    for (int c = 0; c < channels; ++c) {
      const uint8_t* b = data + (i * channels + c) * sizeof(float);
      const uint32_t bits =
          uint32_t{b[0]} | (uint32_t{b[1]} << 8) | (uint32_t{b[2]} << 16) | (uint32_t{b[3]} << 24);
      float v;
      std::memcpy(&v, &bits, sizeof(v));
      if (!std::isfinite(v)) {
        return InvalidArgument(name + ": raw float32 value " + (std::isnan(v) ? "NaN" : "Inf") +
                               " at x=" + std::to_string(i % width) +
                               " y=" + std::to_string(i / width) + " channel=" + std::to_string(c));
      }
      px[c] = v;
    }
    if (image.channels == 3) {
      std::copy(px.begin(), px.begin() + 3, image.pixels.begin() + static_cast<ptrdiff_t>(i * 3));
    } else {
      image.pixels[i] = channels >= 3 ? 0.2126f * px[0] + 0.7152f * px[1] + 0.0722f * px[2] : px[0];
    }
  }
  return image;
}

Result<Image> ReadRawFloat32File(const std::string& path, int width, int height, int channels,
                                 const ImageLimits& limits, DecodeColor color) {
  Result<std::vector<uint8_t>> bytes = ReadBinaryFile(path);
  if (!bytes.ok()) return bytes.status();
  return DecodeRawFloat32(bytes->data(), bytes->size(), width, height, channels, limits, path,
                          color);
}

Result<std::vector<uint8_t>> EncodePngGray8(const std::vector<uint8_t>& pixels, int width,
                                            int height) {
  CLICKDIFF_RETURN_IF_ERROR(CheckShape(pixels.size(), width, height));
  return EncodeRows(pixels, width, height, 8, 1);
}

Result<std::vector<uint8_t>> EncodePngRgb8(const std::vector<uint8_t>& pixels, int width,
                                           int height) {
  CLICKDIFF_RETURN_IF_ERROR(CheckShape(pixels.size(), width, height, 3));
  return EncodeRows(pixels, width, height, 8, 3);
}

Result<std::vector<uint8_t>> EncodePngGray16(const std::vector<uint16_t>& pixels, int width,
                                             int height) {
  CLICKDIFF_RETURN_IF_ERROR(CheckShape(pixels.size(), width, height));
  std::vector<uint8_t> raw(pixels.size() * 2);
  for (size_t i = 0; i < pixels.size(); ++i) {
    raw[2 * i] = static_cast<uint8_t>(pixels[i] >> 8);
    raw[2 * i + 1] = static_cast<uint8_t>(pixels[i] & 0xff);
  }
  return EncodeRows(std::move(raw), width, height, 16, 1);
}

Status WriteMaskPng(const std::string& path, const std::vector<int64_t>& class_ids, int width,
                    int height) {
  Status shape = CheckShape(class_ids.size(), width, height);
  if (!shape.ok()) return shape.WithContext(path);
  std::vector<uint8_t> bytes(class_ids.size());
  for (size_t i = 0; i < class_ids.size(); ++i) {
    if (class_ids[i] < 0 || class_ids[i] > 255) {
      return InvalidArgument(path + ": class id " + std::to_string(class_ids[i]) + " at x=" +
                             std::to_string(i % width) + " y=" + std::to_string(i / width) +
                             " does not fit an 8-bit mask (0..255)");
    }
    bytes[i] = static_cast<uint8_t>(class_ids[i]);
  }
  Result<std::vector<uint8_t>> png = EncodePngGray8(bytes, width, height);
  if (!png.ok()) return png.status().WithContext(path);
  return WriteBinaryFile(path, *png);
}

Status WriteUncertaintyPng(const std::string& path, const std::vector<float>& values, int width,
                           int height) {
  Status shape = CheckShape(values.size(), width, height);
  if (!shape.ok()) return shape.WithContext(path);
  std::vector<uint8_t> bytes(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) {
      return InvalidArgument(path + ": uncertainty is NaN at x=" + std::to_string(i % width) +
                             " y=" + std::to_string(i / width));
    }
    bytes[i] = static_cast<uint8_t>(std::lround(std::clamp(values[i], 0.0f, 1.0f) * 255.0f));
  }
  Result<std::vector<uint8_t>> png = EncodePngGray8(bytes, width, height);
  if (!png.ok()) return png.status().WithContext(path);
  return WriteBinaryFile(path, *png);
}

}  // namespace clickdiff
