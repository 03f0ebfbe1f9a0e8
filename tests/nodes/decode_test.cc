#include "nodes/decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "config/model_options.h"
#include "learning/model_slot.h"
#include "nodes/preprocess.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

using ::testing::HasSubstr;
using testutil::Click;
using testutil::PngImageEvent;
using testutil::Record;

class DecodeTest : public ::testing::Test {
 protected:
  DecodeTest() : decode_(KafkaTopics{}, Limits()) {}
  static DecodeLimits Limits() {
    DecodeLimits limits;
    limits.max_payload_bytes = 1 << 20;
    limits.max_image_side = 512;
    limits.num_classes = 3;
    return limits;
  }
  Decoded Run(const std::string& topic, const std::string& value) const {
    return decode_(Envelope{7, Record(topic, value, 42)});
  }
  // The rejection reason, or "" when the event was accepted.
  std::string Reason(const std::string& topic, const std::string& value) const {
    Decoded d = Run(topic, value);
    const auto* rejected = std::get_if<Rejected>(&d.event);
    return rejected ? rejected->reason : "";
  }
  Decode decode_;
};

TEST_F(DecodeTest, AcceptsAPngImageAndKeepsSequenceAndSource) {
  Decoded d = Run("images", PngImageEvent("a").SerializeAsString());
  EXPECT_EQ(d.seq, 7u);
  EXPECT_EQ(d.source.offset, 42);
  const auto* record = std::get_if<ImageRecord>(&d.event);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->pixels.size(), 24u * 16u);
  EXPECT_EQ(record->stored.event().image_id(), "a");
}

TEST_F(DecodeTest, GarbageBytesAreRejectedNamingTheMessageType) {
  EXPECT_THAT(Reason("images", std::string("\xff\xff\xff\xff garbage", 12)),
              HasSubstr("not a clickdiff.v1.ImageEvent"));
}

TEST_F(DecodeTest, TruncatedProtobufIsRejected) {
  std::string bytes = PngImageEvent("a").SerializeAsString();
  EXPECT_THAT(Reason("images", bytes.substr(0, bytes.size() / 2)), HasSubstr("protobuf"));
}

TEST_F(DecodeTest, OversizedRecordIsRejectedBeforeParsing) {
  EXPECT_THAT(Reason("images", std::string((1 << 20) + 1, 'x')),
              HasSubstr("exceeds limits.max_payload_bytes"));
}

TEST_F(DecodeTest, DimensionsThatDisagreeWithThePngAreRejected) {
  v1::ImageEvent event = PngImageEvent("a");
  event.set_width(25);
  EXPECT_THAT(Reason("images", event.SerializeAsString()), HasSubstr("the PNG is 24x16"));
}

TEST_F(DecodeTest, ImageLargerThanTheLimitIsRejected) {
  v1::ImageEvent event = PngImageEvent("a");
  event.set_width(513);
  EXPECT_THAT(Reason("images", event.SerializeAsString()), HasSubstr("outside 1..512"));
}

TEST_F(DecodeTest, TruncatedPngIsRejected) {
  v1::ImageEvent event = PngImageEvent("a");
  event.set_payload(event.payload().substr(0, event.payload().size() - 20));
  EXPECT_FALSE(Reason("images", event.SerializeAsString()).empty());
}

TEST_F(DecodeTest, NanInRawFloatPixelsIsRejected) {
  v1::ImageEvent event = PngImageEvent("a", 4, 2);
  event.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  event.set_pixel_type(v1::PIXEL_TYPE_FLOAT32);
  std::vector<float> pixels(8, 0.5f);
  pixels[5] = std::nanf("");
  event.set_payload(reinterpret_cast<const char*>(pixels.data()), pixels.size() * sizeof(float));
  EXPECT_THAT(Reason("images", event.SerializeAsString()), HasSubstr("NaN"));
}

TEST_F(DecodeTest, RawPayloadOfTheWrongSizeIsRejected) {
  v1::ImageEvent event = PngImageEvent("a", 4, 2);
  event.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  event.set_pixel_type(v1::PIXEL_TYPE_UINT16);
  event.set_payload(std::string(15, '\0'));
  EXPECT_THAT(Reason("images", event.SerializeAsString()), HasSubstr("needs 16"));
}

TEST_F(DecodeTest, RawUint16IsAccepted) {
  v1::ImageEvent event = PngImageEvent("a", 4, 2);
  event.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  event.set_pixel_type(v1::PIXEL_TYPE_UINT16);
  std::string payload;
  for (int i = 0; i < 8; ++i) payload += {static_cast<char>(i * 10), 1};  // little-endian
  event.set_payload(payload);
  Decoded d = Run("images", event.SerializeAsString());
  const auto* record = std::get_if<ImageRecord>(&d.event);
  ASSERT_NE(record, nullptr);
  EXPECT_FLOAT_EQ(record->pixels[3], 256 + 30);
}

TEST_F(DecodeTest, PngChannelsThatDisagreeWithTheEventAreRejected) {
  v1::ImageEvent event = testutil::RgbPngImageEvent("a");
  event.set_channels(1);
  EXPECT_THAT(Reason("images", event.SerializeAsString()),
              HasSubstr("the PNG is 24x16x3 but the event says 24x16x1"));
}

TEST_F(DecodeTest, RawRgbKeepsItsChannels) {
  v1::ImageEvent event = PngImageEvent("a", 2, 1);
  event.set_channels(3);
  event.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  event.set_pixel_type(v1::PIXEL_TYPE_UINT8);
  event.set_payload(std::string("\x0a\x14\x1e\x28\x32\x3c", 6));  // (10,20,30), (40,50,60)
  Decoded d = Run("images", event.SerializeAsString());
  const auto* record = std::get_if<ImageRecord>(&d.event);
  ASSERT_NE(record, nullptr) << Reason("images", event.SerializeAsString());
  EXPECT_EQ(record->channels, 3);
  EXPECT_EQ(record->pixels, (std::vector<float>{10, 20, 30, 40, 50, 60}));
}

TEST_F(DecodeTest, EmptyIdsAreRejectedNamingTheField) {
  v1::ImageEvent event = PngImageEvent("");
  EXPECT_THAT(Reason("images", event.SerializeAsString()), HasSubstr("image_id: empty"));
  v1::ClickEvent click = Click("a", "", 1, 1);
  EXPECT_THAT(Reason("clicks", click.SerializeAsString()), HasSubstr("click_id: empty"));
}

TEST_F(DecodeTest, ControlCharactersInIdsAreRejected) {
  v1::ClickEvent click = Click(std::string("a\0b", 3), "c1", 1, 1);
  EXPECT_THAT(Reason("clicks", click.SerializeAsString()), HasSubstr("image_id: contains 0x00"));
}

TEST_F(DecodeTest, IdsThatArePathsAreRejected) {
  // Ids become file names (subscribe --out): none may climb out of a folder or be absolute.
  v1::ImageEvent up = PngImageEvent("../../etc/cron.d/x");
  EXPECT_THAT(Reason("images", up.SerializeAsString()), HasSubstr("image_id: contains '/'"));
  v1::ImageEvent absolute = PngImageEvent("x");
  absolute.set_dataset("/tmp");
  EXPECT_THAT(Reason("images", absolute.SerializeAsString()), HasSubstr("dataset: contains '/'"));
  v1::ClickEvent parent = Click("..", "c1", 1, 1);
  EXPECT_THAT(Reason("clicks", parent.SerializeAsString()),
              HasSubstr("image_id: \"..\" is not a valid id"));
  v1::ClickEvent shell = Click("a", "$(reboot)", 1, 1);
  EXPECT_THAT(Reason("clicks", shell.SerializeAsString()), HasSubstr("click_id: contains '$'"));
}

TEST_F(DecodeTest, DotInDatasetIsRejectedBecauseTopicsWouldCollide) {
  v1::ImageEvent event = PngImageEvent("c");
  event.set_dataset("a.b");
  EXPECT_THAT(Reason("images", event.SerializeAsString()), HasSubstr("dataset: contains '.'"));
}

TEST_F(DecodeTest, UnknownClassIsRejected) {
  EXPECT_THAT(Reason("clicks", Click("a", "c1", 1, 1, 3).SerializeAsString()),
              HasSubstr("class_id 3 unknown"));
  EXPECT_THAT(Reason("clicks", Click("a", "c1", 1, 1, 0).SerializeAsString()),
              HasSubstr("class_id 0 unknown"));
  v1::ClickEvent negative = Click("a", "c1", 1, 1, 0);
  negative.set_positive(false);
  EXPECT_EQ(Reason("clicks", negative.SerializeAsString()), "");
}

TEST_F(DecodeTest, NegativeClickCoordinatesAreRejected) {
  EXPECT_THAT(Reason("clicks", Click("a", "c1", -1, 3).SerializeAsString()),
              HasSubstr("negative coordinate"));
}

TEST_F(DecodeTest, DenseLabelsAreChecked) {
  v1::LabelEvent label;
  label.set_dataset("ds");
  label.set_image_id("a");
  label.set_label_id("l1");
  EXPECT_THAT(Reason("labels", label.SerializeAsString()), HasSubstr("neither dense"));
  label.mutable_dense()->set_width(2);
  label.mutable_dense()->set_height(2);
  label.mutable_dense()->set_class_ids(std::string(3, '\0'));
  EXPECT_THAT(Reason("labels", label.SerializeAsString()), HasSubstr("3 class ids for 2x2"));
  label.mutable_dense()->set_class_ids(std::string("\0\1\2\5", 4));
  EXPECT_THAT(Reason("labels", label.SerializeAsString()), HasSubstr("class id 5 unknown"));
  label.mutable_dense()->set_class_ids(std::string("\0\1\2\1", 4));
  EXPECT_EQ(Reason("labels", label.SerializeAsString()), "");
  // 255 marks an unlabelled pixel: a partial training label (scribbles)...
  label.mutable_dense()->set_class_ids(std::string("\xff\1\xff\0", 4));
  EXPECT_EQ(Reason("labels", label.SerializeAsString()), "");
  // ...but not ground truth, nor a label of no pixel.
  label.set_for_evaluation(true);
  EXPECT_THAT(Reason("labels", label.SerializeAsString()),
              HasSubstr("ground truth for evaluation leaves 2 pixels unlabelled"));
  label.set_for_evaluation(false);
  label.mutable_dense()->set_class_ids(std::string(4, '\xff'));
  EXPECT_THAT(Reason("labels", label.SerializeAsString()), HasSubstr("every pixel is 255"));
}

TEST_F(DecodeTest, UnknownTopicIsRejected) {
  EXPECT_THAT(Reason("elsewhere", "x"), HasSubstr("not one the service reads"));
}

TEST_F(DecodeTest, TickPassesThroughWithItsSequenceAndTheImagesTopicsEnd) {
  Decoded d = decode_(Envelope{3, Tick{1234}});
  EXPECT_EQ(d.seq, 3u);
  ASSERT_TRUE(std::holds_alternative<Tick>(d.event));
  EXPECT_EQ(std::get<Tick>(d.event).images_at_end_since_ms, 1234);
}

TEST(PreprocessTest, PutsTheImageOnTheGridInZeroToOne) {
  Decode decode(KafkaTopics{}, DecodeLimits{});
  Decoded d = decode(Envelope{0, Record("images", PngImageEvent("a", 40, 20).SerializeAsString())});
  Decoded out = Preprocess(32)(std::move(d));
  const auto* record = std::get_if<ImageRecord>(&out.event);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->stored.grid_resolution(), 32u);
  ASSERT_EQ(record->stored.grid_size(), 32 * 32);
  float lo = 1, hi = 0;
  for (float v : record->stored.grid()) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_GE(lo, 0.0f);
  EXPECT_LE(hi, 1.0f);
  EXPECT_GT(hi, 0.5f);
  EXPECT_TRUE(record->pixels.empty());
}

TEST(PreprocessTest, AColourImageIsStoredGrayWithFullContrastWhenTheServedModelTakesGray) {
  Config config = testutil::TinyModelConfig();
  config.model.color = model::ColorMode::kGray;
  auto served = std::make_shared<ServingModel>();
  served->segmenter = std::make_shared<model::Segmenter>(
      model::Segmenter::Create(SegmenterOptionsFrom(config).value(), torch::kCPU).value());
  ModelSlot slot;
  slot.Set(served);
  Decode decode(KafkaTopics{}, DecodeLimits{});
  Decoded d = decode(
      Envelope{0, Record("images", testutil::RgbPngImageEvent("a", 32, 32).SerializeAsString())});
  Decoded out = Preprocess(16, &slot)(std::move(d));
  const auto* record = std::get_if<ImageRecord>(&out.event);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->stored.grid_channels(), 1u);
  ASSERT_EQ(record->stored.grid_size(), 16 * 16);
  // Green (gray 0.7152) is the brightest and red (0.2126) the darkest: 1 and 0 after windowing.
  EXPECT_FLOAT_EQ(record->stored.grid(8 * 16 + 13), 1.0f);
  EXPECT_FLOAT_EQ(record->stored.grid(8 * 16 + 2), 0.0f);
}

TEST(PreprocessTest, KeepsTheColoursOfAnRgbImage) {
  Decode decode(KafkaTopics{}, DecodeLimits{});
  Decoded d = decode(
      Envelope{0, Record("images", testutil::RgbPngImageEvent("a", 32, 32).SerializeAsString())});
  const auto* decoded = std::get_if<ImageRecord>(&d.event);
  ASSERT_NE(decoded, nullptr);
  EXPECT_EQ(decoded->channels, 3);
  Decoded out = Preprocess(16)(std::move(d));
  const auto* record = std::get_if<ImageRecord>(&out.event);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->stored.grid_channels(), 3u);
  ASSERT_EQ(record->stored.grid_size(), 3 * 16 * 16);
  // Channel-major: red is 1 on the left and 0 on the right, green the other way round, blue 0.
  auto at = [&](int c, int x) { return record->stored.grid(c * 256 + 8 * 16 + x); };
  EXPECT_FLOAT_EQ(at(0, 2), 1.0f);
  EXPECT_FLOAT_EQ(at(0, 13), 0.0f);
  EXPECT_FLOAT_EQ(at(1, 2), 0.0f);
  EXPECT_FLOAT_EQ(at(1, 13), 1.0f);
  EXPECT_FLOAT_EQ(at(2, 2), 0.0f);
}

}  // namespace
}  // namespace clickdiff
