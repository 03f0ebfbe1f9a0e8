// nodes/messages.h — the values that travel on the flow graph's edges (see graph/pipeline.h for
// the topology). Plain, copyable value types; a message is owned by the node holding it.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "io/kafka_consumer.h"
#include "model/preprocess.h"
#include "model/training_example.h"
#include "schemas/events.pb.h"

namespace clickdiff {

// A periodic tick that lets intake expire pending clicks. It travels in consumption order, so
// everything admitted before it has been applied when intake sees it.
struct Tick {
  // Wall time (ms) since which every images partition has been read to its end with nothing newer
  // handed over (the consumer's end-of-partition events); 0: not at its end (a backlog, a pause).
  int64_t images_at_end_since_ms = 0;
};

// Every input to the graph carries a sequence number given at admission, in admission order, so
// the serial intake stage sees events in consumption order (a tbb::flow::sequencer_node restores
// it after the parallel decode stages) and stored offsets only ever move forward.
struct Envelope {
  uint64_t seq = 0;
  std::variant<Tick, KafkaMessage> input;  // a Kafka record, or a tick
};

// Why an event was refused; it goes to the dead-letter topic with the reason.
struct Rejected {
  std::string reason;
};

// An accepted image before and after preprocessing (grid empty until Preprocess has run).
struct ImageRecord {
  v1::StoredImage stored;
  // Decoded pixels at the image's size, `channels` interleaved (1 gray, 3 RGB); cleared once the
  // image is on the grid.
  std::vector<float> pixels;
  int channels = 1;
};

// The output of decoding one envelope: exactly one per envelope, bad input included.
struct Decoded {
  uint64_t seq = 0;
  KafkaMessage source;  // empty for a tick
  std::variant<Tick, Rejected, ImageRecord, v1::ClickEvent, v1::LabelEvent> event;
  // Not the event's fault (out of memory while decoding or preprocessing it): intake halts instead
  // of dead-lettering it, so a restart reads the record again.
  Status failure;
};

// A request to (re)draw the mask of one image.
struct InferRequest {
  std::string dataset;
  std::string image_id;
  std::chrono::steady_clock::time_point requested;
  // Higher is drawn first (samplers take the highest waiting, first come first served among
  // equals): kPriorityEvent for a new image or click, kPriorityStale for a missing mask or one
  // drawn before the image's last click, then a new version's sweep of the rest: clicked images
  // in [1, 2) (ClickedPriority: the latest click first, so the image an annotator works on shows
  // what its clicks taught before any other), then the others in [0, 1] (the mask's mean
  // uncertainty). A click's preview (kPriorityPreview) goes before all of them.
  double priority = 0;
  // A click's first answer: sampler.preview_samples samples of sampler.preview_steps steps,
  // published as a preview and followed by the request for the final mask.
  bool preview = false;
};

inline constexpr double kPriorityPreview = 4;
inline constexpr double kPriorityEvent = 3;
inline constexpr double kPriorityStale = 2;
// The sweep's priority of an image whose latest click was sent at `last_click_ms` (the click
// event's timestamp_ms, Unix ms): 1 + (last_click_ms + 1) / (2^42 + 1), strictly inside (1, 2)
// (until 2109), so a clicked image always goes before an unclicked one, even with a timestamp of 0.
inline double ClickedPriority(int64_t last_click_ms) {
  constexpr double kSpan = 4398046511104.0;  // 2^42 ms, about 139 years
  return 1 + (std::clamp(static_cast<double>(last_click_ms), 0.0, kSpan - 1) + 1) / (kSpan + 1);
}

// N samples drawn for one image, on the model grid.
struct SampleSet {
  InferRequest request;
  v1::ImageEvent image;        // the image's event, payload included (the mask snaps to its edges)
  model::GridMapping mapping;  // where the image sits on the grid (learning/replay.h)
  torch::Tensor samples;       // [N,R,R] int64 class ids, CPU
  uint64_t model_version = 0;
  uint64_t click_revision = 0;
  std::vector<model::Click> clicks;  // the image's clicks (its own pixels): the mask holds them
  torch::Tensor grid;                // [C,R,R] the image on the model grid (click corrections)
  uint32_t steps = 0;
  bool preview = false;  // drawn for request.preview: published but neither cached nor scored
  // Set instead of samples when the cache already holds the mask for this model version and
  // click revision: it is published again without sampling.
  std::optional<v1::MaskResult> cached;
};

}  // namespace clickdiff
