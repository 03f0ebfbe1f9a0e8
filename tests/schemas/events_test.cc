#include <gtest/gtest.h>

#include <string>

#include "schemas/events.pb.h"

namespace clickdiff {
namespace {

template <typename Message>
Message RoundTrip(const Message& in) {
  std::string bytes;
  EXPECT_TRUE(in.SerializeToString(&bytes));
  Message out;
  EXPECT_TRUE(out.ParseFromString(bytes));
  return out;
}

TEST(EventsTest, ImageEventRoundTripsEveryField) {
  v1::ImageEvent e;
  e.set_dataset("acdc");
  e.set_image_id("patient001_frame01_slice_1");
  e.set_width(232);
  e.set_height(256);
  e.set_channels(1);
  e.set_pixel_type(v1::PIXEL_TYPE_UINT16);
  e.set_encoding(v1::PAYLOAD_ENCODING_RAW);
  e.set_payload(std::string("\x00\x01\x02\xff", 4));
  e.add_spacing(1.5);
  e.add_spacing(1.5);
  (*e.mutable_metadata())["frame"] = "01";
  e.set_timestamp_ms(1763784000000);
  v1::ImageEvent back = RoundTrip(e);
  EXPECT_EQ(back.SerializeAsString(), e.SerializeAsString());
  EXPECT_EQ(back.payload().size(), 4u);
  EXPECT_EQ(back.pixel_type(), v1::PIXEL_TYPE_UINT16);
  EXPECT_EQ(back.metadata().at("frame"), "01");
}

TEST(EventsTest, ClickEventRoundTripsNegativeCoordinatesAndFlags) {
  v1::ClickEvent c;
  c.set_dataset("d");
  c.set_image_id("i");
  c.set_click_id("c-1");
  c.set_x(-3);  // out of bounds on purpose: the schema carries it, validation rejects it
  c.set_y(40);
  c.set_class_id(2);
  c.set_positive(false);
  c.set_annotator("ann");
  v1::ClickEvent back = RoundTrip(c);
  EXPECT_EQ(back.x(), -3);
  EXPECT_EQ(back.class_id(), 2);
  EXPECT_FALSE(back.positive());
  EXPECT_EQ(back.click_id(), "c-1");
}

TEST(EventsTest, LabelEventCarriesEitherADenseMaskOrImageLevelClasses) {
  v1::LabelEvent dense;
  dense.mutable_dense()->set_width(2);
  dense.mutable_dense()->set_height(1);
  dense.mutable_dense()->set_class_ids(std::string("\x00\x03", 2));
  dense.set_for_evaluation(true);
  v1::LabelEvent back = RoundTrip(dense);
  ASSERT_EQ(back.label_case(), v1::LabelEvent::kDense);
  EXPECT_EQ(back.dense().class_ids()[1], '\x03');
  EXPECT_TRUE(back.for_evaluation());

  v1::LabelEvent weak;
  weak.mutable_image_level()->add_class_ids(1);
  weak.mutable_image_level()->add_class_ids(3);
  back = RoundTrip(weak);
  ASSERT_EQ(back.label_case(), v1::LabelEvent::kImageLevel);
  EXPECT_EQ(back.image_level().class_ids_size(), 2);
}

TEST(EventsTest, MaskResultModelUpdateMetricsAndDeadLetterRoundTrip) {
  v1::MaskResult m;
  m.set_image_id("i");
  m.set_width(3);
  m.set_height(1);
  m.set_mask(std::string("\x00\x01\x01", 3));
  m.set_uncertainty(std::string("\x00\x80\xff", 3));
  m.set_model_version(7);
  m.set_click_revision(3);
  m.set_samples(16);
  m.set_steps(200);
  m.set_latency_ms(12.5);
  m.set_sequence(42);
  EXPECT_EQ(RoundTrip(m).SerializeAsString(), m.SerializeAsString());

  v1::ModelUpdate u;
  u.set_model_version(8);
  u.set_method("d3pm");
  u.set_train_steps(1000);
  EXPECT_EQ(RoundTrip(u).model_version(), 8u);

  v1::Metrics metrics;
  metrics.set_model_version(8);
  auto* cls = metrics.add_classes();
  cls->set_class_id(1);
  cls->set_dice(0.81);
  cls->set_hd95(3.5);
  EXPECT_DOUBLE_EQ(RoundTrip(metrics).classes(0).dice(), 0.81);

  v1::DeadLetter d;
  d.set_source_topic("clicks");
  d.set_source_partition(0);
  d.set_source_offset(123);
  d.set_reason("click.x: 300 outside the image (width 256)");
  d.set_payload(std::string("\xde\xad", 2));
  v1::DeadLetter back = RoundTrip(d);
  EXPECT_EQ(back.source_offset(), 123);
  EXPECT_EQ(back.payload(), std::string("\xde\xad", 2));
}

TEST(EventsTest, GarbageAndTruncatedBytesAreRejectedByTheParser) {
  v1::ClickEvent c;
  c.set_image_id("an-image-id-long-enough");
  c.set_click_id("click");
  std::string bytes = c.SerializeAsString();
  v1::ClickEvent out;
  EXPECT_FALSE(out.ParseFromString(bytes.substr(0, bytes.size() - 3)));  // truncated string field
  EXPECT_FALSE(out.ParseFromString(std::string("\xff\xff\xff\xff\xff", 5)));  // invalid tag/varint
}

// Field numbers are a wire contract (schemas/events.proto): changing one breaks every producer.
TEST(EventsTest, FieldNumbersAreStable) {
  const auto* image = v1::ImageEvent::descriptor();
  EXPECT_EQ(image->FindFieldByName("payload")->number(), 8);
  EXPECT_EQ(image->FindFieldByName("timestamp_ms")->number(), 11);
  const auto* click = v1::ClickEvent::descriptor();
  EXPECT_EQ(click->FindFieldByName("click_id")->number(), 3);
  EXPECT_EQ(click->FindFieldByName("class_id")->number(), 6);
  EXPECT_EQ(click->FindFieldByName("positive")->number(), 7);
  EXPECT_EQ(click->FindFieldByName("correction_gap")->number(), 10);  // stored clicks keep it
  const auto* mask = v1::MaskResult::descriptor();
  EXPECT_EQ(mask->FindFieldByName("model_version")->number(), 7);
  EXPECT_EQ(mask->FindFieldByName("click_revision")->number(), 8);
  EXPECT_EQ(mask->FindFieldByName("sequence")->number(), 12);
  EXPECT_EQ(mask->FindFieldByName("preview")->number(), 15);
  const auto* dead = v1::DeadLetter::descriptor();
  EXPECT_EQ(dead->FindFieldByName("reason")->number(), 4);
  EXPECT_EQ(dead->FindFieldByName("payload")->number(), 5);
  const auto* status = v1::ServiceStatus::descriptor();
  EXPECT_EQ(status->FindFieldByName("skipped_steps")->number(), 15);
  EXPECT_EQ(status->FindFieldByName("withheld_versions")->number(), 16);
  EXPECT_EQ(status->FindFieldByName("unreadable_images")->number(), 17);
  EXPECT_EQ(status->FindFieldByName("skipped_records")->number(), 18);
  const auto* stored = v1::StoredImage::descriptor();
  EXPECT_EQ(stored->FindFieldByName("region_x")->number(), 6);
  EXPECT_EQ(stored->FindFieldByName("region_y")->number(), 7);
  EXPECT_EQ(stored->FindFieldByName("region_width")->number(), 8);
  EXPECT_EQ(stored->FindFieldByName("region_height")->number(), 9);
  // Records a store keeps across upgrades.
  EXPECT_EQ(v1::PendingEvent::descriptor()->FindFieldByName("source_timestamp_ms")->number(), 7);
  const auto* outbox = v1::OutboxRecord::descriptor();
  EXPECT_EQ(outbox->FindFieldByName("topic")->number(), 1);
  EXPECT_EQ(outbox->FindFieldByName("key")->number(), 2);
  EXPECT_EQ(outbox->FindFieldByName("value")->number(), 3);
}

}  // namespace
}  // namespace clickdiff
