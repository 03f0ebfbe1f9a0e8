#include "services/event_files.h"

#include "io/image_codec.h"

namespace clickdiff {

Result<v1::ImageEvent> ImageEventFromPng(const std::string& path, const std::string& image_id,
                                         const std::string& dataset) {
  Result<std::vector<uint8_t>> bytes = ReadBinaryFile(path);
  if (!bytes.ok()) return bytes.status();
  Result<Image> image = DecodePng(*bytes, {}, path, DecodeColor::kRgb);  // as the service will
  if (!image.ok()) return image.status();
  v1::ImageEvent event;
  event.set_dataset(dataset);
  event.set_image_id(image_id);
  event.set_width(image->width);
  event.set_height(image->height);
  event.set_channels(image->channels);
  event.set_pixel_type(image->bit_depth == 16 ? v1::PIXEL_TYPE_UINT16 : v1::PIXEL_TYPE_UINT8);
  event.set_encoding(v1::PAYLOAD_ENCODING_PNG);
  event.set_payload(bytes->data(), bytes->size());
  event.set_timestamp_ms(NowMs());
  return event;
}

v1::ClickEvent ClickEventFrom(const Click& c, const std::string& dataset) {
  v1::ClickEvent click;
  click.set_dataset(dataset);
  click.set_image_id(c.image);
  click.set_click_id(c.click_id.value_or(c.image + "@" + std::to_string(c.x) + "," +
                                         std::to_string(c.y) + ":" + std::to_string(c.class_id) +
                                         (c.positive ? "" : "-")));
  click.set_x(c.x);
  click.set_y(c.y);
  click.set_class_id(c.class_id);
  click.set_positive(c.positive);
  click.set_annotator(c.annotator.value_or(""));
  click.set_timestamp_ms(NowMs());
  return click;
}

}  // namespace clickdiff
