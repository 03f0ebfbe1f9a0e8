// io/image_codec.h — decoding and encoding of the image interchange formats (DESIGN.md):
// PNG through libpng (8/16-bit grayscale, RGB/RGBA, palette) and raw float32 with an explicit
// shape; encoders for 8/16-bit gray and 8-bit RGB PNGs; writers for class-id masks and
// uncertainty maps.
//
// Every function here is a free function without shared state: safe to call from any number of
// threads at once. Nothing throws; every failure comes back as a Status whose message names the
// source (file path or the `name` given for in-memory bytes) and the problem, e.g.
// "scan.png: truncated PNG data (needed 8192 more bytes at offset 1234 of 2000)".
//
// Pixel conventions (the contract the model and the CLI rely on):
//  - Decoded images are gray (`channels == 1`), row-major, `pixels[y * width + x]`, unless the
//    caller asks for DecodeColor::kRgb and the source has colour: then `channels == 3`,
//    interleaved, `pixels[(y * width + x) * 3 + c]` for R, G, B.
//  - `pixels` holds the ORIGINAL intensity units as float: 0..255 for 8-bit, 0..65535 for 16-bit,
//    0..(2^d - 1) for d = 1/2/4-bit grayscale (low bit depths are NOT rescaled, so class-id masks
//    written at any bit depth read back as their ids), and the stored values for raw float32.
//    `NominalMax()` gives the full-scale value to normalize by; nothing is normalized here.
//  - Under DecodeColor::kGray (the default, and what class-id masks use), colour is converted to
//    gray with libpng's rgb_to_gray transform and its default weights
//    (the file's cHRM chunk if present, else Rec. 709: 0.2126 R + 0.7152 G + 0.0722 B), computed on
//    the stored values. Alpha (an alpha channel or a tRNS chunk) is DROPPED, not composited.
//    Palette images are expanded to RGB first, then converted the same way. `source_channels`
//    records what the file held.
//    Under DecodeColor::kRgb colour sources keep R, G, B (alpha dropped, palettes expanded).
//  - Raw float32 is little-endian, interleaved (HWC). Multi-channel raw input is converted to gray
//    the same way: 2 channels = gray + alpha (alpha dropped), 3/4 channels = Rec. 709 weights on
//    R, G, B (alpha dropped), or kept as R, G, B under kRgb. NaN or Inf anywhere is an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace clickdiff {

// How the decoded samples were stored in the source.
enum class PixelType {
  kUint8,    // PNG with bit depth 1, 2, 4 or 8 (see Image::bit_depth)
  kUint16,   // 16-bit PNG
  kFloat32,  // raw float32
};

// What a decoder does with colour (see the file comment).
enum class DecodeColor {
  kGray,  // colour is converted to gray: one channel always
  kRgb,   // colour sources keep R, G, B (3 channels); gray sources stay one channel
};

// A decoded image. Plain value type; copy and move freely.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 1;         // 1, or 3 (R, G, B interleaved) for colour under DecodeColor::kRgb
  int source_channels = 1;  // channels in the source before conversion (1..4)
  PixelType pixel_type = PixelType::kUint8;
  int bit_depth = 8;          // bits per sample in the source: 1, 2, 4, 8, 16 or 32 (float)
  std::vector<float> pixels;  // width * height * channels values, row-major, source units

  // Full-scale value of the source units: 2^bit_depth - 1 for integer types, 1 for float32.
  float NominalMax() const;
  // Precondition: channels == 1, 0 <= x < width, 0 <= y < height.
  float At(int x, int y) const { return pixels[static_cast<size_t>(y) * width + x]; }
};

// Limits checked on the header, BEFORE any pixel memory is allocated. A value of 0 disables that
// limit. Exceeding one gives kResourceExhausted naming the limit.
struct ImageLimits {
  int64_t max_width = 16384;
  int64_t max_height = 16384;
  int64_t max_pixels = int64_t{64} * 1024 * 1024;
};

// Decodes a PNG held in memory. `name` is used in error messages only (e.g. the file name).
// Errors: kInvalidArgument (not a PNG / bad signature), kDataLoss (truncated or corrupt data,
// with libpng's message), kResourceExhausted (a limit was exceeded).
Result<Image> DecodePng(const uint8_t* data, size_t size, const ImageLimits& limits = {},
                        const std::string& name = "<memory>",
                        DecodeColor color = DecodeColor::kGray);
Result<Image> DecodePng(const std::vector<uint8_t>& bytes, const ImageLimits& limits = {},
                        const std::string& name = "<memory>",
                        DecodeColor color = DecodeColor::kGray);

// Reads and decodes a PNG file. Errors as DecodePng, plus kNotFound when the file cannot be
// opened; messages start with `path`.
Result<Image> ReadPngFile(const std::string& path, const ImageLimits& limits = {},
                          DecodeColor color = DecodeColor::kGray);

// Decodes raw little-endian float32 samples of the given shape (HWC, interleaved). Errors:
// kInvalidArgument for a bad shape (non-positive, channels outside 1..4), a byte count that is not
// width*height*channels*4 (the message gives both), or a NaN/Inf sample (the message gives x, y and
// channel); kResourceExhausted when the shape exceeds `limits`.
Result<Image> DecodeRawFloat32(const uint8_t* data, size_t size, int width, int height,
                               int channels, const ImageLimits& limits = {},
                               const std::string& name = "<memory>",
                               DecodeColor color = DecodeColor::kGray);
// Reads a raw float32 file of the given shape; errors as DecodeRawFloat32 plus kNotFound.
Result<Image> ReadRawFloat32File(const std::string& path, int width, int height, int channels,
                                 const ImageLimits& limits = {},
                                 DecodeColor color = DecodeColor::kGray);

// Encodes 8-bit grayscale, row-major `pixels` of width * height values.
// Errors: kInvalidArgument when the size does not match or a dimension is not positive.
Result<std::vector<uint8_t>> EncodePngGray8(const std::vector<uint8_t>& pixels, int width,
                                            int height);
// Encodes 16-bit grayscale (values stored big-endian in the PNG as the format requires).
Result<std::vector<uint8_t>> EncodePngGray16(const std::vector<uint16_t>& pixels, int width,
                                             int height);
// Encodes 8-bit RGB, `pixels` interleaved (width * height * 3 values: R, G, B per pixel).
Result<std::vector<uint8_t>> EncodePngRgb8(const std::vector<uint8_t>& pixels, int width,
                                           int height);

// Writes `bytes` to `path` (created or truncated). Errors: kUnavailable naming the path.
Status WriteBinaryFile(const std::string& path, const std::vector<uint8_t>& bytes);
// Reads a whole file. Errors: kNotFound naming the path.
Result<std::vector<uint8_t>> ReadBinaryFile(const std::string& path);

// Writes a class-id mask (row-major, width * height ids) as an 8-bit grayscale PNG, one id per
// pixel. Errors: kInvalidArgument when the size does not match or an id is outside 0..255 (the
// message gives the pixel); kUnavailable when the file cannot be written.
Status WriteMaskPng(const std::string& path, const std::vector<int64_t>& class_ids, int width,
                    int height);

// Writes an uncertainty map with values in [0, 1] as an 8-bit grayscale PNG:
// byte = round(clamp(v, 0, 1) * 255). Values slightly outside [0, 1] are clamped; NaN is an error
// naming the pixel.
Status WriteUncertaintyPng(const std::string& path, const std::vector<float>& values, int width,
                           int height);

}  // namespace clickdiff
