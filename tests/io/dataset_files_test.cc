#include "io/dataset_files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "io/image_codec.h"

namespace clickdiff {
namespace {

namespace fs = std::filesystem;

bool Contains(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

class DatasetFilesTest : public testing::Test {
 protected:
  void SetUp() override {
    const testing::TestInfo* info = testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(testing::TempDir()) / (std::string("dataset_files_") + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "images");
    fs::create_directories(root_ / "masks");
    WriteGray(images() + "/b.png", 6, 4, 10);
    WriteGray(images() + "/a.png", 5, 3, 20);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string images() const { return (root_ / "images").string(); }
  std::string masks() const { return (root_ / "masks").string(); }
  std::string Path(const std::string& name) const { return (root_ / name).string(); }

  static void WriteGray(const std::string& path, int w, int h, uint8_t value) {
    Result<std::vector<uint8_t>> png =
        EncodePngGray8(std::vector<uint8_t>(static_cast<size_t>(w) * h, value), w, h);
    ASSERT_TRUE(png.ok());
    ASSERT_TRUE(WriteBinaryFile(path, *png).ok());
  }
  std::string WriteClicks(const std::string& text) const {
    std::string path = Path("clicks.jsonl");
    std::ofstream(path) << text;
    return path;
  }
  std::vector<NamedImage> LoadImages() const {
    Result<std::vector<NamedImage>> imgs = ReadImageDirectory(images());
    EXPECT_TRUE(imgs.ok()) << imgs.status().ToString();
    return imgs.ok() ? *imgs : std::vector<NamedImage>{};
  }
  // Parses `text` with 4 classes and returns the error status (expects a failure).
  Status ParseError(const std::string& text) const {
    ClickFileOptions options;
    options.num_classes = 4;
    Result<std::vector<Click>> clicks = ReadClicksFile(WriteClicks(text), options);
    EXPECT_FALSE(clicks.ok());
    return clicks.status();
  }

  fs::path root_;
};

TEST_F(DatasetFilesTest, ReadsImagesSortedByName) {
  std::vector<NamedImage> imgs = LoadImages();
  ASSERT_EQ(imgs.size(), 2u);
  EXPECT_EQ(imgs[0].name, "a.png");
  EXPECT_EQ(imgs[0].image.width, 5);
  EXPECT_EQ(imgs[0].image.height, 3);
  EXPECT_EQ(imgs[1].name, "b.png");
  EXPECT_EQ(imgs[1].image.At(0, 0), 10.0f);
}

TEST_F(DatasetFilesTest, ParsesClicksWithOptionalFields) {
  ClickFileOptions options;
  options.num_classes = 4;
  const std::string path = WriteClicks(
      R"({"image": "a.png", "x": 1, "y": 2, "class": 3})"
      "\n\n"
      R"({"image": "b.png", "x": 5, "y": 0, "positive": false, "click_id": 17, "annotator": "ann"})"
      "\n"
      R"({"image": "b.png", "x": 0, "y": 3, "class": 1, "click_id": "c-9"})"
      "\n");
  Result<std::vector<Click>> clicks = ReadClicksFile(path, options);
  ASSERT_TRUE(clicks.ok()) << clicks.status().ToString();
  ASSERT_EQ(clicks->size(), 3u);
  const Click& first = (*clicks)[0];
  EXPECT_EQ(first.image, "a.png");
  EXPECT_EQ(first.x, 1);
  EXPECT_EQ(first.y, 2);
  EXPECT_EQ(first.class_id, 3);
  EXPECT_TRUE(first.positive);
  EXPECT_EQ(first.line, 1);
  const Click& negative = (*clicks)[1];
  EXPECT_FALSE(negative.positive);
  EXPECT_EQ(negative.class_id, 0);  // no class on a negative click: certainly background
  EXPECT_EQ(negative.click_id, "17");
  EXPECT_EQ(negative.annotator, "ann");
  EXPECT_EQ(negative.line, 3);  // blank line 2 counted
  EXPECT_EQ((*clicks)[2].click_id, "c-9");
  EXPECT_TRUE(ValidateClicks(*clicks, LoadImages()).ok());
}

TEST_F(DatasetFilesTest, MalformedJsonNamesFileAndLine) {
  Status s = ParseError(
      "{\"image\": \"a.png\", \"x\": 1, \"y\": 2, \"class\": 1}\n{\"image\": \"a.png\", \"x\": \n");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s, "clicks.jsonl:2: malformed JSON")) << s.ToString();
}

TEST_F(DatasetFilesTest, ClicksParsedFromAStreamNameTheirSource) {
  std::istringstream in("\n{\"image\": \"a.png\", \"x\": 1, \"y\": 2, \"class\": 1}\n{\"x\": 1}\n");
  Result<std::vector<Click>> clicks = ParseClicks(in, "request body");
  ASSERT_FALSE(clicks.ok());
  EXPECT_TRUE(Contains(clicks.status(), "request body:3: missing required field"))
      << clicks.status().ToString();
  std::istringstream good("{\"image\": \"a.png\", \"x\": 1, \"y\": 2, \"class\": 1}");
  clicks = ParseClicks(good, "request body");
  ASSERT_TRUE(clicks.ok()) << clicks.status().ToString();
  ASSERT_EQ(clicks->size(), 1u);
  EXPECT_EQ((*clicks)[0].Where(), "request body:1");
}

TEST_F(DatasetFilesTest, MissingFieldNamesTheField) {
  Status s = ParseError(R"({"image": "a.png", "y": 2, "class": 1})");
  EXPECT_TRUE(Contains(s, "clicks.jsonl:1: missing required field \"x\"")) << s.ToString();
  s = ParseError(R"({"image": "a.png", "x": 1, "y": 2})");
  EXPECT_TRUE(Contains(s, "missing required field \"class\"")) << s.ToString();
  s = ParseError(R"({"x": 1, "y": 2, "class": 1})");
  EXPECT_TRUE(Contains(s, "\"image\"")) << s.ToString();
}

TEST_F(DatasetFilesTest, WronglyTypedFieldsAreErrors) {
  Status s = ParseError(R"({"image": "a.png", "x": "1", "y": 2, "class": 1})");
  EXPECT_TRUE(Contains(s, "field \"x\" must be an integer")) << s.ToString();
  s = ParseError(R"({"image": "a.png", "x": 1.5, "y": 2, "class": 1})");
  EXPECT_TRUE(Contains(s, "field \"x\" must be an integer")) << s.ToString();
  s = ParseError(R"({"image": 3, "x": 1, "y": 2, "class": 1})");
  EXPECT_TRUE(Contains(s, "field \"image\"")) << s.ToString();
  s = ParseError(R"({"image": "a.png", "x": 1, "y": 2, "class": 1, "positive": "no"})");
  EXPECT_TRUE(Contains(s, "field \"positive\"")) << s.ToString();
  s = ParseError(R"([1, 2, 3])");
  EXPECT_TRUE(Contains(s, "must be a JSON object")) << s.ToString();
}

TEST_F(DatasetFilesTest, UnknownClassAndUnknownFieldAreErrors) {
  Status s = ParseError(R"({"image": "a.png", "x": 1, "y": 2, "class": 4})");
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(Contains(s, "clicks.jsonl:1: field \"class\" value 4")) << s.ToString();
  s = ParseError(R"({"image": "a.png", "x": 1, "y": 2, "class": -1})");
  EXPECT_TRUE(Contains(s, "value -1")) << s.ToString();
  s = ParseError(R"({"image": "a.png", "x": 1, "y": 2, "clas": 1})");
  EXPECT_TRUE(Contains(s, "unknown field \"clas\"")) << s.ToString();
}

TEST_F(DatasetFilesTest, ClickOutsideItsImageNamesFileLineAndSize) {
  Result<std::vector<Click>> clicks =
      ReadClicksFile(WriteClicks("{\"image\": \"b.png\", \"x\": 5, \"y\": 3, \"class\": 1}\n"
                                 "{\"image\": \"a.png\", \"x\": 5, \"y\": 0, \"class\": 1}\n"));
  ASSERT_TRUE(clicks.ok()) << clicks.status().ToString();
  Status s = ValidateClicks(*clicks, LoadImages());
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(Contains(s, "clicks.jsonl:2: click x=5 y=0 is outside image a.png (5x3"))
      << s.ToString();

  clicks = ReadClicksFile(WriteClicks("{\"image\": \"a.png\", \"x\": -1, \"y\": 0, \"class\": 1}"));
  ASSERT_TRUE(clicks.ok());
  EXPECT_FALSE(ValidateClicks(*clicks, LoadImages()).ok());
}

TEST_F(DatasetFilesTest, ClickNamingAMissingImageIsAnError) {
  Result<std::vector<Click>> clicks =
      ReadClicksFile(WriteClicks("{\"image\": \"c.png\", \"x\": 0, \"y\": 0, \"class\": 1}\n"));
  ASSERT_TRUE(clicks.ok());
  Status s = ValidateClicks(*clicks, LoadImages());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(s, "clicks.jsonl:1: click names image \"c.png\"")) << s.ToString();
}

TEST_F(DatasetFilesTest, MissingClicksFileIsNotFound) {
  Result<std::vector<Click>> clicks = ReadClicksFile(Path("nope.jsonl"));
  ASSERT_FALSE(clicks.ok());
  EXPECT_EQ(clicks.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(clicks.status(), "nope.jsonl"));
}

TEST_F(DatasetFilesTest, TruncatedImageStopsTheLoadNamingTheFile) {
  Result<std::vector<uint8_t>> bytes = ReadBinaryFile(images() + "/b.png");
  ASSERT_TRUE(bytes.ok());
  bytes->resize(bytes->size() - 20);
  ASSERT_TRUE(WriteBinaryFile(images() + "/b.png", *bytes).ok());
  Result<std::vector<NamedImage>> imgs = ReadImageDirectory(images());
  ASSERT_FALSE(imgs.ok());
  EXPECT_EQ(imgs.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(imgs.status(), "b.png")) << imgs.status().ToString();

  std::ofstream(images() + "/b.png") << "not a png";
  imgs = ReadImageDirectory(images());
  ASSERT_FALSE(imgs.ok());
  EXPECT_TRUE(Contains(imgs.status(), "b.png: not a PNG")) << imgs.status().ToString();
}

TEST_F(DatasetFilesTest, EmptyOrMissingImageDirectoryIsAnError) {
  EXPECT_EQ(ReadImageDirectory(masks()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadImageDirectory(Path("absent")).status().code(), StatusCode::kNotFound);
}

TEST_F(DatasetFilesTest, ReadsMasksInImageOrder) {
  ASSERT_TRUE(WriteMaskPng(masks() + "/a.png", std::vector<int64_t>(15, 2), 5, 3).ok());
  ASSERT_TRUE(WriteMaskPng(masks() + "/b.png", std::vector<int64_t>(24, 1), 6, 4).ok());
  MaskDirectoryOptions options;
  options.num_classes = 3;
  Result<std::vector<NamedMask>> m = ReadMaskDirectory(masks(), LoadImages(), options);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].name, "a.png");
  EXPECT_EQ((*m)[0].class_ids, std::vector<int64_t>(15, 2));
  EXPECT_EQ((*m)[1].width, 6);
}

TEST_F(DatasetFilesTest, MaskOfTheWrongSizeNamesBothFiles) {
  ASSERT_TRUE(WriteMaskPng(masks() + "/a.png", std::vector<int64_t>(12, 1), 4, 3).ok());
  ASSERT_TRUE(WriteMaskPng(masks() + "/b.png", std::vector<int64_t>(24, 1), 6, 4).ok());
  Result<std::vector<NamedMask>> m = ReadMaskDirectory(masks(), LoadImages());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(Contains(m.status(), "masks/a.png: mask is 4x3 but image")) << m.status().ToString();
  EXPECT_TRUE(Contains(m.status(), "is 5x3")) << m.status().ToString();
}

TEST_F(DatasetFilesTest, MaskValueOutsideTheClassesIsAnError) {
  std::vector<int64_t> ids(15, 0);
  ids[7] = 5;  // x = 2, y = 1
  ASSERT_TRUE(WriteMaskPng(masks() + "/a.png", ids, 5, 3).ok());
  ASSERT_TRUE(WriteMaskPng(masks() + "/b.png", std::vector<int64_t>(24, 1), 6, 4).ok());
  MaskDirectoryOptions options;
  options.num_classes = 4;
  Result<std::vector<NamedMask>> m = ReadMaskDirectory(masks(), LoadImages(), options);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(Contains(m.status(), "a.png: mask value 5 at x=2 y=1")) << m.status().ToString();
}

TEST_F(DatasetFilesTest, ScribblesMayLeavePixelsUnlabelledButMustLabelOne) {
  std::vector<int64_t> ids(15, 255);
  ids[7] = 1;
  ASSERT_TRUE(WriteMaskPng(masks() + "/a.png", ids, 5, 3).ok());
  MaskDirectoryOptions options;
  options.require_all = false;
  Result<std::vector<NamedMask>> m = ReadMaskDirectory(masks(), LoadImages(), options);
  ASSERT_FALSE(m.ok());  // a mask must label every pixel
  EXPECT_TRUE(Contains(m.status(), "a.png: mask value 255 at x=0 y=0")) << m.status().ToString();
  options.allow_unknown = true;
  m = ReadMaskDirectory(masks(), LoadImages(), options);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)[0].class_ids, ids);
  ASSERT_TRUE(WriteMaskPng(masks() + "/a.png", std::vector<int64_t>(15, 255), 5, 3).ok());
  m = ReadMaskDirectory(masks(), LoadImages(), options);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(Contains(m.status(), "a.png: every pixel is 255")) << m.status().ToString();
}

TEST_F(DatasetFilesTest, MissingOrExtraMasksAreErrors) {
  ASSERT_TRUE(WriteMaskPng(masks() + "/a.png", std::vector<int64_t>(15, 1), 5, 3).ok());
  Result<std::vector<NamedMask>> m = ReadMaskDirectory(masks(), LoadImages());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(m.status(), "missing mask for image")) << m.status().ToString();

  MaskDirectoryOptions lenient;
  lenient.require_all = false;
  m = ReadMaskDirectory(masks(), LoadImages(), lenient);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->size(), 1u);

  ASSERT_TRUE(WriteMaskPng(masks() + "/z.png", std::vector<int64_t>(4, 1), 2, 2).ok());
  m = ReadMaskDirectory(masks(), LoadImages(), lenient);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(Contains(m.status(), "z.png: mask has no image")) << m.status().ToString();
}

TEST(DatasetFilesRealDataTest, AcdcValidationClicksMatchTheirImages) {
  const std::string root = CLICKDIFF_SOURCE_DIR "/../shared/data/acdc/val";
  std::error_code ec;
  if (!fs::is_directory(root + "/images", ec)) GTEST_SKIP() << "no ACDC data";
  Result<std::vector<NamedImage>> imgs = ReadImageDirectory(root + "/images");
  ASSERT_TRUE(imgs.ok()) << imgs.status().ToString();
  ClickFileOptions options;
  options.num_classes = 4;
  Result<std::vector<Click>> clicks = ReadClicksFile(root + "/clicks.jsonl", options);
  ASSERT_TRUE(clicks.ok()) << clicks.status().ToString();
  EXPECT_FALSE(clicks->empty());
  Status valid = ValidateClicks(*clicks, *imgs);
  EXPECT_TRUE(valid.ok()) << valid.ToString();
  MaskDirectoryOptions mask_options;
  mask_options.num_classes = 4;
  Result<std::vector<NamedMask>> masks = ReadMaskDirectory(root + "/truth", *imgs, mask_options);
  ASSERT_TRUE(masks.ok()) << masks.status().ToString();
  EXPECT_EQ(masks->size(), imgs->size());
}

}  // namespace
}  // namespace clickdiff
