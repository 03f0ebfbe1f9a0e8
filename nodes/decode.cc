#include "nodes/decode.h"

#include <cmath>
#include <cstring>
#include <new>

#include "base/labels.h"
#include "io/image_codec.h"

namespace clickdiff {
namespace {

using Outcome = std::variant<Tick, Rejected, ImageRecord, v1::ClickEvent, v1::LabelEvent>;

Rejected Reject(std::string reason) { return Rejected{std::move(reason)}; }

// Pixels of a raw uint8/uint16 payload (little-endian, interleaved) as floats with the codec's
// rules (colour kept), by re-encoding as float32 and reusing its decoder (one conversion path).
Result<Image> DecodeRawInteger(const v1::ImageEvent& event, const ImageLimits& limits) {
  const size_t bytes_per_sample = event.pixel_type() == v1::PIXEL_TYPE_UINT8 ? 1 : 2;
  const size_t samples = size_t{event.width()} * event.height() * event.channels();
  if (event.payload().size() != samples * bytes_per_sample) {
    return InvalidArgument("payload: " + std::to_string(event.payload().size()) +
                           " bytes, but a raw " + std::to_string(event.width()) + "x" +
                           std::to_string(event.height()) + "x" + std::to_string(event.channels()) +
                           " image of " + (bytes_per_sample == 1 ? "uint8" : "uint16") + " needs " +
                           std::to_string(samples * bytes_per_sample));
  }
  const auto* in = reinterpret_cast<const uint8_t*>(event.payload().data());
  std::vector<float> values(samples);
  for (size_t i = 0; i < samples; ++i) {
    values[i] =
        bytes_per_sample == 1 ? in[i] : static_cast<float>(in[2 * i] | (in[2 * i + 1] << 8));
  }
  Result<Image> image = DecodeRawFloat32(
      reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(float), event.width(),
      event.height(), event.channels(), limits, "payload", DecodeColor::kRgb);
  if (!image.ok()) return image;
  image->pixel_type = bytes_per_sample == 1 ? PixelType::kUint8 : PixelType::kUint16;
  image->bit_depth = bytes_per_sample == 1 ? 8 : 16;
  return image;
}

}  // namespace

Result<Image> DecodePixels(const v1::ImageEvent& event, int max_side) {
  ImageLimits limits;
  limits.max_width = limits.max_height = max_side;
  const auto* data = reinterpret_cast<const uint8_t*>(event.payload().data());
  const size_t size = event.payload().size();
  if (event.encoding() == v1::PAYLOAD_ENCODING_PNG) {
    Result<Image> image = DecodePng(data, size, limits, "payload", DecodeColor::kRgb);
    if (!image.ok()) return image;
    if (image->width != static_cast<int>(event.width()) ||
        image->height != static_cast<int>(event.height()) ||
        image->channels != static_cast<int>(event.channels())) {
      return InvalidArgument("payload: the PNG is " + std::to_string(image->width) + "x" +
                             std::to_string(image->height) + "x" + std::to_string(image->channels) +
                             " but the event says " + std::to_string(event.width()) + "x" +
                             std::to_string(event.height()) + "x" +
                             std::to_string(event.channels()) + " (width x height x channels)");
    }
    return image;
  }
  if (event.pixel_type() == v1::PIXEL_TYPE_FLOAT32) {
    return DecodeRawFloat32(data, size, event.width(), event.height(), event.channels(), limits,
                            "payload", DecodeColor::kRgb);
  }
  return DecodeRawInteger(event, limits);
}

DecodeLimits DecodeLimitsFrom(const Config& config) {
  DecodeLimits limits;
  limits.max_payload_bytes = config.limits.max_payload_bytes;
  limits.max_image_side = config.limits.max_image_side;
  limits.num_classes = config.model.num_classes;
  return limits;
}

Decode::Decode(const KafkaTopics& topics, const DecodeLimits& limits)
    : topics_(topics), limits_(limits) {}

Decoded Decode::operator()(const Envelope& envelope) const {
  Decoded out;
  out.seq = envelope.seq;
  const auto* message = std::get_if<KafkaMessage>(&envelope.input);
  if (message == nullptr) {
    out.event = std::get<Tick>(envelope.input);
    return out;
  }
  out.source = *message;
  try {
    out.event = DecodeRecord(*message);
  } catch (const std::bad_alloc&) {
    out.failure = ResourceExhausted("out of memory decoding " + message->topic + "@" +
                                    std::to_string(message->offset));
  } catch (const std::exception& e) {
    out.event = Reject(std::string("decode failed: ") + e.what());
  }
  return out;
}

Outcome Decode::DecodeRecord(const KafkaMessage& message) const {
  if (static_cast<int64_t>(message.value.size()) > limits_.max_payload_bytes) {
    return Reject("record of " + std::to_string(message.value.size()) +
                  " bytes exceeds limits.max_payload_bytes (" +
                  std::to_string(limits_.max_payload_bytes) + ")");
  }
  auto ids = [&](const std::string& dataset, const std::string& image_id) {
    std::string bad = IdProblem("dataset", dataset, limits_.max_id_bytes);
    // ZeroMQ topics are mask.<dataset>.<image_id>: a '.' in the dataset would make two images
    // share a topic.
    if (bad.empty() && dataset.find('.') != std::string::npos) bad = "dataset: contains '.'";
    return bad.empty() ? IdProblem("image_id", image_id, limits_.max_id_bytes) : bad;
  };
  const int k = limits_.num_classes;

  if (message.topic == topics_.images) {
    v1::ImageEvent event;
    if (!event.ParseFromString(message.value)) {
      return Reject("not a clickdiff.v1.ImageEvent (protobuf parse failed on " +
                    std::to_string(message.value.size()) + " bytes)");
    }
    if (std::string bad = ids(event.dataset(), event.image_id()); !bad.empty()) return Reject(bad);
    const auto side = static_cast<uint32_t>(limits_.max_image_side);
    if (event.width() < 1 || event.width() > side || event.height() < 1 || event.height() > side) {
      return Reject("width x height " + std::to_string(event.width()) + "x" +
                    std::to_string(event.height()) + " outside 1.." + std::to_string(side));
    }
    if (event.channels() != 1 && event.channels() != 3) {
      return Reject("channels: " + std::to_string(event.channels()) + " (1 or 3 allowed)");
    }
    if (event.encoding() == v1::PAYLOAD_ENCODING_UNSPECIFIED) {
      return Reject("encoding: unspecified (PNG or RAW)");
    }
    if (event.encoding() == v1::PAYLOAD_ENCODING_RAW &&
        event.pixel_type() == v1::PIXEL_TYPE_UNSPECIFIED) {
      return Reject("pixel_type: unspecified for a RAW payload (UINT8, UINT16 or FLOAT32)");
    }
    if (event.payload().empty()) return Reject("payload: empty");
    Result<Image> pixels = DecodePixels(event, limits_.max_image_side);
    if (!pixels.ok()) return Reject(pixels.status().message());
    ImageRecord record;
    record.pixels = std::move(pixels->pixels);
    record.channels = pixels->channels;
    *record.stored.mutable_event() = std::move(event);
    return record;
  }

  if (message.topic == topics_.clicks) {
    v1::ClickEvent click;
    if (!click.ParseFromString(message.value)) {
      return Reject("not a clickdiff.v1.ClickEvent (protobuf parse failed on " +
                    std::to_string(message.value.size()) + " bytes)");
    }
    if (std::string bad = ids(click.dataset(), click.image_id()); !bad.empty()) return Reject(bad);
    if (std::string bad = IdProblem("click_id", click.click_id(), limits_.max_id_bytes);
        !bad.empty()) {
      return Reject(bad);
    }
    if (click.x() < 0 || click.y() < 0) {
      return Reject("click (" + std::to_string(click.x()) + ", " + std::to_string(click.y()) +
                    ") has a negative coordinate");
    }
    const int lowest = click.positive() ? 1 : 0;
    if (click.class_id() < lowest || click.class_id() >= k) {
      return Reject("class_id " + std::to_string(click.class_id()) + " unknown: a " +
                    (click.positive() ? "positive" : "negative") + " click names " +
                    std::to_string(lowest) + ".." + std::to_string(k - 1));
    }
    return click;
  }

  if (message.topic == topics_.labels) {
    v1::LabelEvent label;
    if (!label.ParseFromString(message.value)) {
      return Reject("not a clickdiff.v1.LabelEvent (protobuf parse failed on " +
                    std::to_string(message.value.size()) + " bytes)");
    }
    if (std::string bad = ids(label.dataset(), label.image_id()); !bad.empty()) return Reject(bad);
    if (std::string bad = IdProblem("label_id", label.label_id(), limits_.max_id_bytes);
        !bad.empty()) {
      return Reject(bad);
    }
    if (label.has_dense()) {
      const v1::DenseMask& dense = label.dense();
      const size_t expected = size_t{dense.width()} * dense.height();
      if (expected == 0 || dense.class_ids().size() != expected) {
        return Reject("dense: " + std::to_string(dense.class_ids().size()) + " class ids for " +
                      std::to_string(dense.width()) + "x" + std::to_string(dense.height()));
      }
      // 255 marks a pixel whose class is unknown (a partial label: scribbles), which only
      // training takes: the evaluator's ground truth must give every pixel a class.
      size_t unknown = 0;
      for (unsigned char c : dense.class_ids()) {
        if (c == kUnknownClass) {
          ++unknown;
        } else if (c >= k) {
          return Reject("dense: class id " + std::to_string(c) + " unknown (0.." +
                        std::to_string(k - 1) + ", or 255 for an unlabelled pixel)");
        }
      }
      if (unknown == expected) return Reject("dense: every pixel is 255 (unlabelled)");
      if (unknown > 0 && label.for_evaluation()) {
        return Reject("dense: ground truth for evaluation leaves " + std::to_string(unknown) +
                      " pixels unlabelled (255); only a training label may be partial");
      }
    } else if (label.has_image_level()) {
      for (int c : label.image_level().class_ids()) {
        if (c < 1 || c >= k) {
          return Reject("image_level: class id " + std::to_string(c) + " unknown (1.." +
                        std::to_string(k - 1) + ")");
        }
      }
    } else {
      return Reject("label: neither dense nor image_level is set");
    }
    return label;
  }
  return Reject("topic " + message.topic + " is not one the service reads");
}

}  // namespace clickdiff
