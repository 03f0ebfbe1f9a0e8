#include "io/image_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace clickdiff {
namespace {

// Hand-made PNGs (generated with Python's zlib/struct, chunk CRCs included) for the colour types
// the encoder does not write.
// RGB 3x1: (255,0,0), (0,255,0), (100,100,100).
const std::vector<uint8_t> kRgb3x1 = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x94,
    0x82, 0x83, 0xe3, 0x00, 0x00, 0x00, 0x12, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
    0xcf, 0xc0, 0xc0, 0xf0, 0x9f, 0x21, 0x25, 0x25, 0x05, 0x00, 0x10, 0x54, 0x03, 0x2b, 0x89,
    0x99, 0x75, 0x33, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};
// RGBA 2x1: (0,0,255,a=0), (200,200,200,a=128).
const std::vector<uint8_t> kRgba2x1 = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0xf4,
    0x22, 0x7f, 0x8a, 0x00, 0x00, 0x00, 0x11, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
    0x60, 0xf8, 0xcf, 0x70, 0xe2, 0xc4, 0x89, 0x06, 0x00, 0x0d, 0x8b, 0x03, 0xd8, 0x24, 0xc8,
    0x69, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};
// Palette 2x1: palette {(10,10,10), (0,255,0)}, indices 0, 1.
const std::vector<uint8_t> kPalette2x1 = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x03, 0x00, 0x00, 0x00, 0xc3,
    0xfc, 0x8f, 0xb8, 0x00, 0x00, 0x00, 0x06, 0x50, 0x4c, 0x54, 0x45, 0x0a, 0x0a, 0x0a, 0x00,
    0xff, 0x00, 0xb2, 0xd5, 0x9f, 0x1e, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9c, 0x63, 0x60, 0x60, 0x04, 0x00, 0x00, 0x04, 0x00, 0x02, 0xbf, 0x7a, 0x3f, 0x4a, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};
// 2-bit grayscale 4x1: values 0, 1, 2, 3.
const std::vector<uint8_t> kGray2bit4x1 = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00,
    0x00, 0x96, 0xe7, 0x48, 0xb0, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78,
    0x9c, 0x63, 0x90, 0x06, 0x00, 0x00, 0x1d, 0x00, 0x1c, 0x8e, 0xf4, 0xf5, 0x21, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};

bool Contains(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

std::vector<uint8_t> Gradient8(int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37) % 256);
  return px;
}

std::vector<uint8_t> NoisyPng(int w, int h) {
  std::mt19937 rng(1);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h);
  for (uint8_t& p : px) p = static_cast<uint8_t>(rng());
  Result<std::vector<uint8_t>> png = EncodePngGray8(px, w, h);
  EXPECT_TRUE(png.ok());
  return *png;
}

std::vector<uint8_t> FloatBytes(const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());  // little-endian host
  return bytes;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(testing::TempDir()) / name).string();
}

TEST(ImageCodecTest, RoundTrips8BitGray) {
  const std::vector<uint8_t> px = Gradient8(5, 3);
  Result<std::vector<uint8_t>> png = EncodePngGray8(px, 5, 3);
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  Result<Image> img = DecodePng(*png);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->width, 5);
  EXPECT_EQ(img->height, 3);
  EXPECT_EQ(img->channels, 1);
  EXPECT_EQ(img->bit_depth, 8);
  EXPECT_EQ(img->pixel_type, PixelType::kUint8);
  EXPECT_FLOAT_EQ(img->NominalMax(), 255.0f);
  ASSERT_EQ(img->pixels.size(), px.size());
  for (size_t i = 0; i < px.size(); ++i) EXPECT_EQ(img->pixels[i], px[i]) << i;
  EXPECT_EQ(img->At(1, 2), px[2 * 5 + 1]);
}

TEST(ImageCodecTest, RoundTrips16BitGrayExactly) {
  const std::vector<uint16_t> px = {0, 1, 255, 256, 1000, 40000, 65534, 65535};
  Result<std::vector<uint8_t>> png = EncodePngGray16(px, 4, 2);
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  Result<Image> img = DecodePng(*png);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->bit_depth, 16);
  EXPECT_EQ(img->pixel_type, PixelType::kUint16);
  EXPECT_FLOAT_EQ(img->NominalMax(), 65535.0f);
  for (size_t i = 0; i < px.size(); ++i) EXPECT_EQ(img->pixels[i], px[i]) << i;
}

TEST(ImageCodecTest, ConvertsRgbToGrayWithRec709Weights) {
  Result<Image> img = DecodePng(kRgb3x1);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->channels, 1);
  EXPECT_EQ(img->source_channels, 3);
  EXPECT_NEAR(img->pixels[0], 0.2126 * 255, 1.0);  // red
  EXPECT_NEAR(img->pixels[1], 0.7152 * 255, 1.0);  // green
  EXPECT_NEAR(img->pixels[2], 100, 1.0);           // gray stays gray
}

TEST(ImageCodecTest, DropsAlphaInsteadOfCompositing) {
  Result<Image> img = DecodePng(kRgba2x1);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->source_channels, 4);
  EXPECT_NEAR(img->pixels[0], 0.0722 * 255, 1.0);  // blue with alpha 0 keeps its colour
  EXPECT_NEAR(img->pixels[1], 200, 1.0);
}

TEST(ImageCodecTest, ExpandsPaletteThenConvertsToGray) {
  Result<Image> img = DecodePng(kPalette2x1);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->bit_depth, 8);
  EXPECT_NEAR(img->pixels[0], 10, 1.0);
  EXPECT_NEAR(img->pixels[1], 0.7152 * 255, 1.0);
}

TEST(ImageCodecTest, KeepsLowBitDepthValuesUnscaled) {
  Result<Image> img = DecodePng(kGray2bit4x1);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->bit_depth, 2);
  EXPECT_FLOAT_EQ(img->NominalMax(), 3.0f);
  EXPECT_EQ(img->pixels, (std::vector<float>{0, 1, 2, 3}));
}

TEST(ImageCodecTest, ReportsTruncatedData) {
  std::vector<uint8_t> png = NoisyPng(64, 64);
  png.resize(png.size() / 2);
  Result<Image> img = DecodePng(png, {}, "half.png");
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(img.status(), "half.png")) << img.status().ToString();
  EXPECT_TRUE(Contains(img.status(), "truncated")) << img.status().ToString();
}

TEST(ImageCodecTest, ReportsFileCutRightAfterTheHeader) {
  std::vector<uint8_t> png = NoisyPng(8, 8);
  png.resize(8 + 25);  // signature + IHDR only
  Result<Image> img = DecodePng(png);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss);
}

// A 64-byte PNG (found by ops/chaos/fuzz.sh, kept in its png corpus) whose sPLT chunk header
// claims 1,936,946,035 bytes: libpng asked for all of it at once before the allocation cap.
TEST(ImageCodecTest, AChunkClaimingGigabytesIsRefusedNotAllocated) {
  std::vector<uint8_t> png = NoisyPng(12, 10);
  png.resize(8 + 25);  // signature + IHDR
  const std::string splt = "\x73\x73\x73\x73sPLT";
  png.insert(png.end(), splt.begin(), splt.end());
  png.resize(64, 0x73);
  Result<Image> img = DecodePng(png, {}, "splt.png");
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(img.status(), "a chunk asked for 1936946036 bytes"))
      << img.status().ToString();
}

TEST(ImageCodecTest, RejectsGarbageAndCorruptChunks) {
  std::vector<uint8_t> garbage(100);
  std::mt19937 rng(2);
  for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng());
  Result<Image> img = DecodePng(garbage, {}, "junk.png");
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(img.status(), "not a PNG")) << img.status().ToString();
  EXPECT_FALSE(DecodePng(std::vector<uint8_t>{}).ok());

  // Valid signature followed by garbage.
  std::vector<uint8_t> fake(8 + garbage.size());
  std::copy(kRgb3x1.begin(), kRgb3x1.begin() + 8, fake.begin());
  std::copy(garbage.begin(), garbage.end(), fake.begin() + 8);
  img = DecodePng(fake);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss);

  // A flipped byte inside the compressed data: zlib's check fails before the chunk CRC is read.
  std::vector<uint8_t> png = NoisyPng(32, 32);
  png[png.size() / 2] ^= 0xff;
  img = DecodePng(png);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(img.status(), "corrupt PNG: IDAT")) << img.status().ToString();
}

TEST(ImageCodecTest, ChecksSizeLimitsBeforeDecoding) {
  std::vector<uint8_t> png = NoisyPng(100, 50);
  ImageLimits limits;
  limits.max_width = 64;
  Result<Image> img = DecodePng(png, limits, "big.png");
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(img.status(), "max_width")) << img.status().ToString();
  limits = ImageLimits{};
  limits.max_pixels = 4999;
  img = DecodePng(png, limits);
  ASSERT_FALSE(img.ok());
  EXPECT_TRUE(Contains(img.status(), "max_pixels")) << img.status().ToString();
  limits.max_pixels = 5000;
  EXPECT_TRUE(DecodePng(png, limits).ok());
}

TEST(ImageCodecTest, DecodesRawFloat32AndChecksTheByteCount) {
  const std::vector<float> values = {0.5f, -1.0f, 1e6f, 3.0f, 0.0f, 2.0f};
  Result<Image> img = DecodeRawFloat32(FloatBytes(values).data(), 24, 3, 2, 1);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->pixel_type, PixelType::kFloat32);
  EXPECT_EQ(img->pixels, values);

  img = DecodeRawFloat32(FloatBytes(values).data(), 20, 3, 2, 1, {}, "scan.raw");
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(img.status(), "scan.raw")) << img.status().ToString();
  EXPECT_TRUE(Contains(img.status(), "needs 24 bytes, got 20")) << img.status().ToString();

  EXPECT_FALSE(DecodeRawFloat32(FloatBytes(values).data(), 24, 0, 2, 1).ok());
  ImageLimits limits;
  limits.max_height = 1;
  EXPECT_EQ(DecodeRawFloat32(FloatBytes(values).data(), 24, 3, 2, 1, limits).status().code(),
            StatusCode::kResourceExhausted);
}

TEST(ImageCodecTest, RejectsNanAndInfInRawFloat32) {
  std::vector<float> values = {0.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f, 2.0f};
  Result<Image> img = DecodeRawFloat32(FloatBytes(values).data(), 16, 2, 2, 1);
  ASSERT_FALSE(img.ok());
  EXPECT_TRUE(Contains(img.status(), "NaN at x=1 y=0")) << img.status().ToString();
  values[1] = 0.0f;
  values[3] = std::numeric_limits<float>::infinity();
  img = DecodeRawFloat32(FloatBytes(values).data(), 16, 2, 2, 1);
  ASSERT_FALSE(img.ok());
  EXPECT_TRUE(Contains(img.status(), "Inf at x=1 y=1")) << img.status().ToString();
}

TEST(ImageCodecTest, KeepsColourWhenAskedAndDropsAlpha) {
  Result<Image> rgb = DecodePng(kRgb3x1, {}, "rgb.png", DecodeColor::kRgb);
  ASSERT_TRUE(rgb.ok()) << rgb.status().ToString();
  EXPECT_EQ(rgb->channels, 3);
  EXPECT_EQ(rgb->pixels, (std::vector<float>{255, 0, 0, 0, 255, 0, 100, 100, 100}));
  Result<Image> rgba = DecodePng(kRgba2x1, {}, "rgba.png", DecodeColor::kRgb);
  ASSERT_TRUE(rgba.ok()) << rgba.status().ToString();
  EXPECT_EQ(rgba->channels, 3);
  EXPECT_EQ(rgba->source_channels, 4);
  EXPECT_EQ(rgba->pixels, (std::vector<float>{0, 0, 255, 200, 200, 200}));
  Result<Image> palette = DecodePng(kPalette2x1, {}, "palette.png", DecodeColor::kRgb);
  ASSERT_TRUE(palette.ok()) << palette.status().ToString();
  EXPECT_EQ(palette->pixels, (std::vector<float>{10, 10, 10, 0, 255, 0}));
  // Gray stays one channel.
  Result<Image> gray = DecodePng(kGray2bit4x1, {}, "gray.png", DecodeColor::kRgb);
  ASSERT_TRUE(gray.ok());
  EXPECT_EQ(gray->channels, 1);
}

TEST(ImageCodecTest, RgbRoundTripsThroughTheEncoder) {
  const std::vector<uint8_t> rgb = {1, 2, 3, 250, 128, 0, 7, 8, 9, 0, 0, 255};  // 2x2
  Result<std::vector<uint8_t>> png = EncodePngRgb8(rgb, 2, 2);
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  Result<Image> back = DecodePng(*png, {}, "rgb.png", DecodeColor::kRgb);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->channels, 3);
  EXPECT_EQ(back->pixels, std::vector<float>(rgb.begin(), rgb.end()));
  Result<std::vector<uint8_t>> short_rgb = EncodePngRgb8({1, 2, 3}, 2, 2);
  ASSERT_FALSE(short_rgb.ok());
  EXPECT_TRUE(Contains(short_rgb.status(), "sample count 3 does not match 2x2x3"))
      << short_rgb.status().ToString();
}

TEST(ImageCodecTest, ConvertsRawRgbToGray) {
  const std::vector<float> rgb = {1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f};  // 2x1, 3 channels
  Result<Image> img = DecodeRawFloat32(FloatBytes(rgb).data(), 24, 2, 1, 3);
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->source_channels, 3);
  EXPECT_NEAR(img->pixels[0], 0.2126f, 1e-6);
  EXPECT_NEAR(img->pixels[1], 0.0722f, 1e-6);
  Result<Image> kept =
      DecodeRawFloat32(FloatBytes(rgb).data(), 24, 2, 1, 3, {}, "rgb.raw", DecodeColor::kRgb);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(kept->channels, 3);
  EXPECT_EQ(kept->pixels, rgb);
}

TEST(ImageCodecTest, WritesMasksAndUncertaintyAndReadsFilesBack) {
  const std::string mask_path = TempPath("codec_mask.png");
  ASSERT_TRUE(WriteMaskPng(mask_path, {0, 1, 2, 3, 255, 0}, 3, 2).ok());
  Result<Image> mask = ReadPngFile(mask_path);
  ASSERT_TRUE(mask.ok()) << mask.status().ToString();
  EXPECT_EQ(mask->pixels, (std::vector<float>{0, 1, 2, 3, 255, 0}));
  Status bad = WriteMaskPng(mask_path, {0, 256}, 2, 1);
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad, "class id 256")) << bad.ToString();
  EXPECT_FALSE(WriteMaskPng(mask_path, {0, 1, 2}, 2, 1).ok());

  const std::string unc_path = TempPath("codec_uncertainty.png");
  ASSERT_TRUE(WriteUncertaintyPng(unc_path, {0.0f, 0.5f, 1.0f, 1.2f, -0.1f, 0.25f}, 3, 2).ok());
  Result<Image> unc = ReadPngFile(unc_path);
  ASSERT_TRUE(unc.ok()) << unc.status().ToString();
  EXPECT_EQ(unc->pixels, (std::vector<float>{0, 128, 255, 255, 0, 64}));
  EXPECT_FALSE(WriteUncertaintyPng(unc_path, {std::numeric_limits<float>::quiet_NaN()}, 1, 1).ok());

  Result<Image> missing = ReadPngFile(TempPath("does_not_exist.png"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status(), "does_not_exist.png"));
}

TEST(ImageCodecTest, DecodesARealAcdcSliceAndItsTruth) {
  const std::string root = CLICKDIFF_SOURCE_DIR "/../shared/data/acdc/val";
  std::error_code ec;
  if (!std::filesystem::is_directory(root + "/images", ec)) GTEST_SKIP() << "no ACDC data";
  std::string image_path;
  for (const auto& entry : std::filesystem::directory_iterator(root + "/images")) {
    image_path = entry.path().string();
    break;
  }
  ASSERT_FALSE(image_path.empty());
  const std::string file = std::filesystem::path(image_path).filename().string();
  Result<Image> image = ReadPngFile(image_path);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  Result<Image> truth = ReadPngFile(root + "/truth/" + file);
  ASSERT_TRUE(truth.ok()) << truth.status().ToString();
  EXPECT_EQ(image->width, truth->width);
  EXPECT_EQ(image->height, truth->height);
  for (float v : truth->pixels) ASSERT_TRUE(v == 0 || v == 1 || v == 2 || v == 3) << v;
}

}  // namespace
}  // namespace clickdiff
