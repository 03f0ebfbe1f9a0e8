#include "model/preprocess.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace clickdiff::model {
namespace {

TEST(PreprocessTest, WideImageIsCentredOnTheSquareGrid) {
  Result<GridMapping> m = MakeGridMapping(200, 100, 64);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->side, 200);
  EXPECT_EQ(m->pad_x, 0);
  EXPECT_EQ(m->pad_y, 50);
  EXPECT_EQ(m->GridY0(), 16);  // 50 * 64 / 200
  EXPECT_EQ(m->GridY1(), 48);  // 150 * 64 / 200
  EXPECT_EQ(m->GridX0(), 0);
  EXPECT_EQ(m->GridX1(), 64);
  EXPECT_EQ(m->ToGrid(0, 0), std::make_pair(int64_t{0}, int64_t{16}));
  EXPECT_EQ(m->ToGrid(199, 99), std::make_pair(int64_t{63}, int64_t{47}));
  EXPECT_FALSE(MakeGridMapping(0, 10, 64).ok());
}

TEST(PreprocessTest, WindowingMapsPercentilesToZeroAndOne) {
  Result<GridMapping> m = MakeGridMapping(64, 64, 64);
  ASSERT_TRUE(m.ok());
  std::vector<float> pixels(64 * 64);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = 1000.0f + static_cast<float>(i % 64) * 10;
  Result<torch::Tensor> grid = ImageToGrid(pixels.data(), *m);
  ASSERT_TRUE(grid.ok()) << grid.status().ToString();
  EXPECT_EQ(grid->sizes(), (std::vector<int64_t>{1, 64, 64}));
  EXPECT_NEAR(grid->min().item<float>(), 0.0f, 1e-6);
  EXPECT_NEAR(grid->max().item<float>(), 1.0f, 1e-6);
  EXPECT_LT((*grid)[0][0][0].item<float>(), (*grid)[0][0][32].item<float>());
}

TEST(PreprocessTest, ConstantImageGivesZerosAndNaNIsRejected) {
  Result<GridMapping> m = MakeGridMapping(8, 8, 16);
  ASSERT_TRUE(m.ok());
  std::vector<float> flat(64, 7.0f);
  Result<torch::Tensor> grid = ImageToGrid(flat.data(), *m);
  ASSERT_TRUE(grid.ok());
  EXPECT_EQ(grid->abs().sum().item<float>(), 0.0f);
  flat[5] = std::nanf("");
  EXPECT_FALSE(ImageToGrid(flat.data(), *m).ok());
}

TEST(PreprocessTest, FloatExtremesGiveAFiniteGrid) {
  // +-3e38 are finite float32s whose difference is not: windowed in float32 they became NaN,
  // which a click on the image then trained into every weight.
  Result<GridMapping> m = MakeGridMapping(8, 8, 8);
  ASSERT_TRUE(m.ok());
  std::vector<float> extremes(64);
  for (size_t i = 0; i < extremes.size(); ++i) extremes[i] = i % 2 == 0 ? 3e38f : -3e38f;
  Result<torch::Tensor> grid = ImageToGrid(extremes.data(), *m);
  ASSERT_TRUE(grid.ok()) << grid.status().ToString();
  EXPECT_TRUE(torch::isfinite(*grid).all().item<bool>());
  EXPECT_EQ((*grid)[0][0][0].item<float>(), 1.0f);
  EXPECT_EQ((*grid)[0][0][1].item<float>(), 0.0f);
  // The same for a colour image a gray model takes: made gray in double too.
  std::vector<float> rgb;
  for (int i = 0; i < 64; ++i) {
    const float v = i % 2 == 0 ? 3e38f : -3e38f;
    rgb.insert(rgb.end(), {v, v, v});
  }
  Result<torch::Tensor> gray = ImageToModelGrid(rgb.data(), 3, *m, 1);
  ASSERT_TRUE(gray.ok()) << gray.status().ToString();
  EXPECT_TRUE(torch::isfinite(*gray).all().item<bool>());
  EXPECT_GT((*gray)[0][0][0].item<float>(), (*gray)[0][0][1].item<float>());
}

TEST(PreprocessTest, ColourChannelsShareOneWindowSoTheirBalanceIsKept) {
  Result<GridMapping> m = MakeGridMapping(16, 16, 16);
  ASSERT_TRUE(m.ok());
  // R ramps 0..150, G is half of R, B is constant 30: one window over all three.
  std::vector<float> rgb;
  for (int i = 0; i < 256; ++i) {
    const float r = static_cast<float>(i % 16) * 10;
    rgb.insert(rgb.end(), {r, r / 2, 30.0f});
  }
  Result<torch::Tensor> grid = ImageToGrid(rgb.data(), *m, {}, 3);
  ASSERT_TRUE(grid.ok()) << grid.status().ToString();
  ASSERT_EQ(grid->sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_NEAR((*grid)[0][3][15].item<float>(), 1.0f, 1e-6);  // R's 150 is the top
  EXPECT_NEAR((*grid)[1][3][15].item<float>(), 0.5f, 1e-6);  // G keeps half of it
  EXPECT_NEAR((*grid)[2][3][0].item<float>(), 0.2f, 1e-6);   // B: 30 of 150
  EXPECT_NEAR((*grid)[0][3][0].item<float>(), 0.0f, 1e-6);
}

TEST(PreprocessTest, AColourImageForAGrayModelIsMadeGrayBeforeItIsWindowed) {
  Result<GridMapping> m = MakeGridMapping(4, 4, 4);
  ASSERT_TRUE(m.ok());
  // Left half pure red, right half pure blue: gray 0.2126 and 0.0722 of full scale.
  std::vector<float> rgb;
  for (int i = 0; i < 16; ++i) {
    rgb.insert(rgb.end(), i % 4 < 2 ? std::initializer_list<float>{255, 0, 0}
                                    : std::initializer_list<float>{0, 0, 255});
  }
  Result<torch::Tensor> gray = ImageToModelGrid(rgb.data(), 3, *m, 1);
  ASSERT_TRUE(gray.ok()) << gray.status().ToString();
  ASSERT_EQ(gray->sizes(), (std::vector<int64_t>{1, 4, 4}));
  // The gray image's own window: red is its brightest, blue its darkest (full contrast), as a
  // gray file of the same picture gives; MatchChannels on the colour grid keeps the colour's
  // window.
  EXPECT_NEAR((*gray)[0][1][0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR((*gray)[0][1][3].item<float>(), 0.0f, 1e-6);
  Result<torch::Tensor> colour = ImageToModelGrid(rgb.data(), 3, *m, 3);
  ASSERT_TRUE(colour.ok());
  ASSERT_EQ(colour->sizes(), (std::vector<int64_t>{3, 4, 4}));
  EXPECT_NEAR((*MatchChannels(*colour, 1))[0][1][0].item<float>(), kRec709[0], 1e-6);
}

TEST(PreprocessTest, MatchChannelsRepeatsGrayAndWeighsColourWithRec709) {
  torch::Tensor gray = torch::full({1, 2, 2}, 0.25f);
  Result<torch::Tensor> rgb = MatchChannels(gray, 3);
  ASSERT_TRUE(rgb.ok());
  ASSERT_EQ(rgb->sizes(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_TRUE(torch::allclose(*rgb, torch::full({3, 2, 2}, 0.25f)));
  torch::Tensor colour =
      torch::stack({torch::ones({2, 2}), torch::zeros({2, 2}), torch::ones({2, 2})})
          .unsqueeze(0);  // a batch of one magenta image
  Result<torch::Tensor> back = MatchChannels(colour, 1);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->sizes(), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_NEAR((*back)[0][0][1][1].item<float>(), 0.2126f + 0.0722f, 1e-6);
  EXPECT_TRUE(MatchChannels(colour, 3)->equal(colour));
  Result<torch::Tensor> two = MatchChannels(torch::zeros({2, 4, 4}), 3);
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.status().message().find("2 channels"), std::string::npos)
      << two.status().ToString();
}

TEST(PreprocessTest, MaskFollowsTheSameMappingAsClicks) {
  Result<GridMapping> m = MakeGridMapping(100, 50, 32);
  ASSERT_TRUE(m.ok());
  std::vector<int64_t> ids(100 * 50, 0);
  for (int y = 20; y < 30; ++y) {
    for (int x = 40; x < 60; ++x) ids[y * 100 + x] = 2;
  }
  Result<torch::Tensor> grid = MaskToGrid(ids.data(), *m);
  ASSERT_TRUE(grid.ok());
  EXPECT_EQ(grid->sizes(), (std::vector<int64_t>{32, 32}));
  auto [gx, gy] = m->ToGrid(50, 25);
  EXPECT_EQ((*grid)[gy][gx].item<int64_t>(), 2);
  auto [bx, by] = m->ToGrid(5, 5);
  EXPECT_EQ((*grid)[by][bx].item<int64_t>(), 0);
  // Area is kept up to the grid's quantization: 200 of 5000 pixels = 4% of the image.
  double image_cells =
      static_cast<double>((m->GridX1() - m->GridX0()) * (m->GridY1() - m->GridY0()));
  double fraction = (*grid == 2).sum().item<int64_t>() / image_cells;
  EXPECT_NEAR(fraction, 0.04, 0.015);
}

TEST(PreprocessTest, ScribblesKeepTheirThinStrokesOnTheGrid) {
  // A 256x128 label map: a one-pixel line of class 1 along row 40, one of class 2 down column 200,
  // a one-pixel line of background along row 100; everything else unknown.
  Result<GridMapping> m = MakeGridMapping(256, 128, 64);
  ASSERT_TRUE(m.ok());
  std::vector<int64_t> ids(256 * 128, kUnknownClass);
  for (int x = 10; x < 150; ++x) ids[40 * 256 + x] = 1;
  for (int y = 10; y < 90; ++y) ids[y * 256 + 200] = 2;
  for (int x = 10; x < 250; ++x) ids[100 * 256 + x] = 0;
  Result<torch::Tensor> grid = LabelMapToGrid(ids.data(), *m);
  ASSERT_TRUE(grid.ok());
  // Nearest-neighbour sampling sees one row or column in four; every cell a stroke crosses keeps
  // its class here.
  for (int x = 12; x < 148; x += 4) {
    auto [gx, gy] = m->ToGrid(x, 40);
    EXPECT_EQ((*grid)[gy][gx].item<int64_t>(), 1) << "x=" << x;
  }
  for (int y = 12; y < 88; y += 4) {
    auto [gx, gy] = m->ToGrid(200, y);
    EXPECT_EQ((*grid)[gy][gx].item<int64_t>(), 2) << "y=" << y;
  }
  auto [bx, by] = m->ToGrid(120, 100);
  EXPECT_EQ((*grid)[by][bx].item<int64_t>(), 0);
  // The rest, padding included, stays unknown: the cells the strokes touch (4 px a cell) alone.
  EXPECT_EQ((*grid != kUnknownClass).sum().item<int64_t>(), 36 + 21 + 61);
  EXPECT_EQ((*grid)[0][0].item<int64_t>(), kUnknownClass);
  // A label map without unknown pixels is a mask: MaskToGrid's grid.
  std::vector<int64_t> full(256 * 128, 0);
  for (int y = 30; y < 60; ++y) full[y * 256 + 100] = 1;
  Result<torch::Tensor> as_mask = LabelMapToGrid(full.data(), *m);
  Result<torch::Tensor> nearest = MaskToGrid(full.data(), *m);
  ASSERT_TRUE(as_mask.ok() && nearest.ok());
  EXPECT_TRUE(torch::equal(*as_mask, *nearest));
}

TEST(PreprocessTest, CropReturnsTheImageRegionOfGridMaps) {
  Result<GridMapping> m = MakeGridMapping(200, 100, 64);
  ASSERT_TRUE(m.ok());
  torch::Tensor maps = torch::zeros({3, 64, 64});
  torch::Tensor cropped = CropToImage(maps, *m);
  EXPECT_EQ(cropped.sizes(), (std::vector<int64_t>{3, 32, 64}));
  EXPECT_EQ(CropToImage(torch::zeros({2, 3, 64, 64}), *m).sizes(),
            (std::vector<int64_t>{2, 3, 32, 64}));
}

// A 300x200 image, dark (value 3 with noise below 1) but for a bright 100x60 box at (150, 40): an
// ultrasound sector's black surround, in miniature.
std::vector<float> FramedImage(int channels = 1) {
  std::vector<float> pixels(static_cast<size_t>(300 * 200 * channels));
  for (int y = 0; y < 200; ++y) {
    for (int x = 0; x < 300; ++x) {
      const bool content = x >= 150 && x < 250 && y >= 40 && y < 100;
      for (int c = 0; c < channels; ++c) {
        const size_t i = (static_cast<size_t>(y) * 300 + x) * channels + c;
        pixels[i] =
            content ? 100.0f + static_cast<float>((x + y) % 50) : 3.0f + ((x * y) % 7) / 8.0f;
      }
    }
  }
  return pixels;
}

TEST(PreprocessTest, TheContentRegionIsTheBoxOfWhatIsNotTheDarkFrameWithAMarginCaptionsLeftOut) {
  const std::vector<float> gray = FramedImage();
  Result<ImageRegion> region = ContentRegion(gray.data(), 300, 200, 1);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  // A margin of 2% of 300 px = 6 px around [150, 250) x [40, 100).
  EXPECT_EQ(region->x, 144);
  EXPECT_EQ(region->y, 34);
  EXPECT_EQ(region->width, 112);
  EXPECT_EQ(region->height, 72);
  // A caption in the frame (a bright 8x4 label at (10, 180)) is not content.
  std::vector<float> captioned = gray;
  for (int y = 180; y < 184; ++y) {
    for (int x = 10; x < 18; ++x) captioned[static_cast<size_t>(y) * 300 + x] = 250.0f;
  }
  Result<ImageRegion> without_caption = ContentRegion(captioned.data(), 300, 200, 1);
  ASSERT_TRUE(without_caption.ok());
  EXPECT_EQ(without_caption->x, 144);
  EXPECT_EQ(without_caption->width, 112);
  EXPECT_EQ(without_caption->height, 72);
  // Colour: the brightest channel decides; here a box bright in blue alone.
  std::vector<float> rgb = FramedImage(3);
  for (size_t i = 0; i < rgb.size(); i += 3) rgb[i] = rgb[i + 1] = 3.0f;
  Result<ImageRegion> coloured = ContentRegion(rgb.data(), 300, 200, 3);
  ASSERT_TRUE(coloured.ok());
  EXPECT_EQ(coloured->width, 112);
  // Content everywhere, a flat image, or a crop that saves under 10% of the area: the whole image.
  std::vector<float> busy(300 * 200);
  for (size_t i = 0; i < busy.size(); ++i) busy[i] = static_cast<float>(i % 17);
  EXPECT_EQ(ContentRegion(busy.data(), 300, 200, 1)->width, 0);
  const std::vector<float> flat(300 * 200, 5.0f);
  EXPECT_EQ(ContentRegion(flat.data(), 300, 200, 1)->width, 0);
  std::vector<float> nearly = FramedImage();
  for (int x = 3; x < 297; ++x) nearly[100 * 300 + x] = 200.0f;  // a bright line across
  for (int y = 3; y < 197; ++y) nearly[static_cast<size_t>(y) * 300 + 200] = 200.0f;
  EXPECT_EQ(ContentRegion(nearly.data(), 300, 200, 1)->width, 0);
  EXPECT_FALSE(ContentRegion(nullptr, 300, 200, 1).ok());
  EXPECT_FALSE(ContentRegion(gray.data(), 300, 0, 1).ok());
}

TEST(PreprocessTest, ACroppedImageFillsTheGridAndMasksComeBackAtTheImageSize) {
  const std::vector<float> pixels = FramedImage();
  const ImageRegion region = ContentRegion(pixels.data(), 300, 200, 1).value();
  Result<GridMapping> m = MakeGridMapping(300, 200, 32, region);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->Cropped());
  EXPECT_EQ(m->side, 112);  // the region's larger side, not the image's
  EXPECT_EQ(m->pad_y, 20);
  EXPECT_EQ(m->GridX0(), 0);
  EXPECT_EQ(m->GridX1(), 32);
  // The region's corners are the grid's; a pixel outside takes the nearest edge cell.
  EXPECT_EQ(m->ToGrid(144, 34), std::make_pair(int64_t{0}, m->GridY0()));
  EXPECT_EQ(m->ToGrid(255, 105), std::make_pair(int64_t{31}, m->GridY1() - 1));
  EXPECT_EQ(m->ToGrid(0, 199), std::make_pair(int64_t{0}, m->GridY1() - 1));
  EXPECT_EQ(m->ToGrid(299, 0), std::make_pair(int64_t{31}, m->GridY0()));
  // The grid holds the region alone: the same as the cropped pixels placed on their own grid.
  std::vector<float> cropped;
  for (int64_t y = region.y; y < region.y + region.height; ++y) {
    for (int64_t x = region.x; x < region.x + region.width; ++x) {
      cropped.push_back(pixels[static_cast<size_t>(y * 300 + x)]);
    }
  }
  Result<torch::Tensor> grid = ImageToGrid(pixels.data(), *m);
  Result<torch::Tensor> alone =
      ImageToGrid(cropped.data(), MakeGridMapping(region.width, region.height, 32).value());
  ASSERT_TRUE(grid.ok() && alone.ok());
  EXPECT_TRUE(torch::allclose(*grid, *alone));
  // Masks and clicks follow the region.
  std::vector<int64_t> ids(300 * 200, 0);
  for (int y = 50; y < 80; ++y) {
    for (int x = 170; x < 230; ++x) ids[static_cast<size_t>(y) * 300 + x] = 1;
  }
  torch::Tensor on_grid = MaskToGrid(ids.data(), *m).value();
  auto [gx, gy] = m->ToGrid(200, 65);
  EXPECT_EQ(on_grid[gy][gx].item<int64_t>(), 1);
  // 1800 of the region's 112x72 pixels: 22% of its cells (4% of the whole image's).
  const double cells =
      static_cast<double>((m->GridX1() - m->GridX0()) * (m->GridY1() - m->GridY0()));
  EXPECT_NEAR(on_grid.eq(1).sum().item<int64_t>() / cells, 1800.0 / (112 * 72), 0.03);
  // Back at the image's size: the region's values in place, the fill around them.
  torch::Tensor region_maps = torch::ones({2, region.height, region.width});
  torch::Tensor placed = PlaceInImage(region_maps, *m, 0.0);
  EXPECT_EQ(placed.sizes(), (std::vector<int64_t>{2, 200, 300}));
  EXPECT_EQ(placed.sum().item<double>(), 2.0 * 112 * 72);
  EXPECT_EQ(placed[0][34][144].item<double>(), 1.0);
  EXPECT_EQ(placed[0][33][144].item<double>(), 0.0);
  // A region that leaves the image is refused, naming it.
  Result<GridMapping> outside = MakeGridMapping(300, 200, 32, ImageRegion{250, 0, 100, 50});
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("not inside the 300x200 image"), std::string::npos);
  // Width 0: the whole image, as without a region.
  EXPECT_FALSE(MakeGridMapping(300, 200, 32, ImageRegion{}).value().Cropped());
}

}  // namespace
}  // namespace clickdiff::model
