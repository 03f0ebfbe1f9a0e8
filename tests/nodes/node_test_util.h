// Builders for node tests: valid events as Kafka records, with a knob to break each field.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "io/image_codec.h"
#include "io/kafka_consumer.h"
#include "io/store.h"
#include "model/trainer.h"
#include "schemas/events.pb.h"

namespace clickdiff::testutil {

// A RocksDB store in a fresh directory named after `tag` and the running test (set in `*dir`;
// the caller removes it).
inline std::unique_ptr<Store> OpenFreshStore(const std::string& tag, std::filesystem::path* dir) {
  *dir = std::filesystem::temp_directory_path() /
         ("clickdiff_" + tag + "_" + std::to_string(::getpid()) + "_" +
          ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(*dir);
  StoreConfig config;
  config.path = (*dir / "db").string();
  return Store::Open(config).value();
}

// A model small enough for node tests: a 16-cell grid, 2 levels, 8 channels, 10 d3pm steps.
inline Config TinyModelConfig() {
  Config config;
  config.model.resolution = 16;
  config.model.levels = 2;
  config.model.base_channels = 8;
  config.model.encoder_channels = 8;
  config.model.d3pm.steps = 10;
  return config;
}

// Trains `model` 60 steps on `data` (batches of up to 4, learning rate 5e-3): a model that knows
// `data` far better than a fresh one. Returns whether training succeeded.
inline bool Pretrain(model::Segmenter& model, const std::vector<model::TrainingExample>& data) {
  model::TrainerOptions options;
  options.batch_size = 4;
  options.learning_rate = 5e-3;
  options.max_steps = 60;
  model::Trainer trainer(&model, options);
  return trainer.Run(data, {}).ok();
}

// Sampler settings: N samples of `steps` denoising steps within `memory_budget_mb`.
inline SamplerConfig SamplerSettings(int samples, int steps, int memory_budget_mb) {
  SamplerConfig c;
  c.samples = samples;
  c.steps = steps;
  c.memory_budget_mb = memory_budget_mb;
  return c;
}

// The store record of a 32x24 image "ds/<id>" on a `resolution` grid, cell (x, y) = value(x, y).
inline v1::StoredImage StoredImageOnGrid(const std::string& id, int resolution,
                                         const std::function<float(int, int)>& value) {
  v1::StoredImage image;
  image.mutable_event()->set_dataset("ds");
  image.mutable_event()->set_image_id(id);
  image.mutable_event()->set_width(32);
  image.mutable_event()->set_height(24);
  image.set_grid_resolution(resolution);
  for (int y = 0; y < resolution; ++y) {
    for (int x = 0; x < resolution; ++x) image.add_grid(value(x, y));
  }
  return image;
}

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

// An RGB PNG image event: the left half pure red, the right half pure green.
inline v1::ImageEvent RgbPngImageEvent(const std::string& id, int width = 24, int height = 16) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 0);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x)
      rgb[(static_cast<size_t>(y) * width + x) * 3 + (x < width / 2 ? 0 : 1)] = 255;
  }
  std::vector<uint8_t> png = EncodePngRgb8(rgb, width, height).value();
  v1::ImageEvent event = PngImageEvent(id, width, height);
  event.set_channels(3);
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

}  // namespace clickdiff::testutil
