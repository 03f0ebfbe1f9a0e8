// Builders for node tests: valid events as Kafka records, with a knob to break each field.
#pragma once

#include <string>

#include "io/image_codec.h"
#include "io/kafka_consumer.h"
#include "schemas/events.pb.h"

namespace clickdiff::testing {

inline v1::ImageEvent PngImageEvent(const std::string& id, int width = 24, int height = 16) {
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 37) % 251);
  std::vector<uint8_t> png = EncodePngGray8(pixels, width, height).value();
  v1::ImageEvent event;
  event.set_dataset("ds");
  event.set_image_id(id);
  event.set_width(width);
  event.set_height(height);
  event.set_channels(1);
  event.set_pixel_type(v1::PIXEL_TYPE_UINT8);
  event.set_encoding(v1::PAYLOAD_ENCODING_PNG);
  event.set_payload(png.data(), png.size());
  return event;
}

inline v1::ClickEvent Click(const std::string& image, const std::string& id, int x, int y,
                            int class_id = 1) {
  v1::ClickEvent click;
  click.set_dataset("ds");
  click.set_image_id(image);
  click.set_click_id(id);
  click.set_x(x);
  click.set_y(y);
  click.set_class_id(class_id);
  click.set_positive(true);
  return click;
}

inline KafkaMessage Record(const std::string& topic, const std::string& value, int64_t offset = 0) {
  KafkaMessage m;
  m.topic = topic;
  m.offset = offset;
  m.value = value;
  return m;
}

}  // namespace clickdiff::testing
