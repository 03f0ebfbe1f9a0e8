// config/config.h — the typed configuration of clickdiff (service and CLI).
//
// Plain value structs with the defaults of embedded mode. Loaded and validated by
// config/config_loader.h; every key, its type and its allowed range live in one table there.
// Choices are enums after loading (their names: the k...Names tables). The modules below take
// their own section as their options; config/model_options.h converts the model's sections into
// the model library's options. Copyable; no synchronization: build once at start-up, then share
// by const reference.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/enum_names.h"
#include "model/choices.h"

namespace clickdiff {

// embedded: the service starts its own Kafka-protocol broker; external: a real cluster.
enum class Mode { kEmbedded, kExternal };
inline constexpr std::array<EnumName<Mode>, 2> kModeNames{{
    {"embedded", Mode::kEmbedded},
    {"external", Mode::kExternal},
}};

// Who teaches the student (TeacherConfig).
enum class TeacherMode { kEma, kTwin };
inline constexpr std::array<EnumName<TeacherMode>, 2> kTeacherModeNames{{
    {"ema", TeacherMode::kEma},
    {"twin", TeacherMode::kTwin},
}};

struct KafkaTopics {
  std::string images = "images";
  std::string clicks = "clicks";
  std::string labels = "labels";
  std::string model_updates = "model-updates";
  std::string metrics = "metrics";
  std::string masks;                // empty: masks are published on ZeroMQ only
  std::string dlq_suffix = ".dlq";  // dead letters of topic T go to T + dlq_suffix
};

struct KafkaConfig {
  // Empty in embedded mode (the service starts librdkafka's mock cluster on loopback); the
  // comma-separated broker list of a real cluster in external mode.
  std::string bootstrap_servers;
  int embedded_brokers = 1;
  int partitions = 1;  // partitions per topic created in embedded mode
  std::string group_id = "clickdiff";
  std::string client_id = "clickdiff";
  // The consumer's group.instance.id (static membership, KIP-345): a restarted instance takes its
  // partitions back at once instead of waiting for its dead self's session to time out. "auto":
  // derived from client_id, the host name and the store's identity in external mode, none in
  // embedded mode (the broker dies with the service); empty: dynamic membership; anything else:
  // used as it is (Kafka's characters: letters, digits, '.', '_' and '-').
  std::string instance_id = "auto";
  KafkaTopics topics;
  // Passed verbatim to librdkafka (security.protocol, sasl.*, ssl.*, ...); librdkafka validates
  // them.
  std::map<std::string, std::string> properties;
  // librdkafka properties whose values are read from files when a client starts, for secrets
  // kept out of the configuration (sasl.password: /run/secrets/kafka-password): the file's
  // content, less one trailing newline. A name may not be in `properties` as well.
  std::map<std::string, std::string> property_files;
};

struct StoreConfig {
  std::string path = "./var/db";
  bool sync = false;                // fsync every write batch
  std::string compression = "lz4";  // lz4 | zstd | none
  int block_cache_mb = 64;
  // Every family's memtables together (RocksDB's db_write_buffer_size): writes flush to disk
  // beyond it. 0: RocksDB's own bound, per family.
  int write_buffer_mb = 128;
};

struct ZmqCurveConfig {
  bool enabled = false;
  // The server's key pair: a key file of `clickdiff keygen` (server_key_file), or inline in Z85
  // (40 characters each). Clients need the public key only.
  std::string server_public_key;
  std::string server_secret_key;
  std::string server_key_file;
  // Who may connect (a ZAP handler checks every handshake): clients' public keys in Z85, and a
  // directory of their .pub files. With CURVE on, the server refuses to start with neither.
  std::vector<std::string> client_keys;
  std::string client_keys_dir;
  // The key pair this machine's CLI clients (subscribe, stats, annotate...) connect with, a key
  // file of `clickdiff keygen`; empty: a fresh pair per connection, which no allow-list holds.
  std::string client_key_file;
};

struct ZmqConfig {
  std::string publish_endpoint = "tcp://127.0.0.1:*";  // "*" port: the OS picks one
  std::string query_endpoint = "tcp://127.0.0.1:*";
  int send_high_water_mark = 1000;  // messages queued per slow subscriber before dropping
  // Memory for the current masks resent to late subscribers (MiB of serialized masks): beyond it
  // the masks published longest ago are no longer resent (the query socket still answers them
  // from the store), so a million images do not need a million masks in RAM. 0: none resent.
  int late_joiner_budget_mb = 256;
  ZmqCurveConfig curve;
};

struct D3pmConfig {
  int steps = 200;
  double beta_start = 1e-4;
  double beta_end = 0.05;  // paper 000: 0.02, which leaves 13% of the label in x_T
  double prior_share = 0;  // share of training examples drawn from the prior at t = T
};

struct GaussianConfig {
  int steps = 4;
  double beta_min = 0.1;
  double beta_max = 20.0;
  int latent_dim = 32;
};

struct LossConfig {
  model::LossKind kind = model::LossKind::kFocal;  // focal | pce | pce_ms | pce_cv (model/losses.h)
  double focal_gamma = 2.0;
  double focal_alpha = 0.999;  // weight of foreground (clicked) pixels
  // Weight of a dense mask's pixel (model/losses.h): 1 - focal_alpha (set it with focal_alpha),
  // what an unclicked pixel of a click map weighs, so a dense image counts about as much as a
  // clicked one (the teacher's rule for pseudo-labels) instead of 160-800 of them.
  double dense_weight = 0.001;
  double ms_weight = 1.0;        // pce_ms: Mumford-Shah fidelity
  double cv_weight = 0.3;        // pce_cv: contrastive variance (lambda_cv)
  double cv_temperature = 0.07;  // pce_cv: tau
  double tv_weight = 0.01;       // pce_ms, pce_cv: total variation of the prediction
  double vlb_weight = 0.01;      // d3pm: weight of the variational term
};

// Random changes to training batches (model/augment.h).
struct AugmentConfig {
  bool flips = true;       // horizontal flips
  bool rotations = false;  // quarter turns
  double intensity = 0.0;  // gamma/contrast/brightness strength
  double noise = 0.0;      // largest standard deviation of added pixel noise
};

struct ModelConfig {
  model::Method method = model::Method::kD3pm;  // d3pm | gaussian_x0 | unet (baseline)
  int num_classes = 2;
  std::vector<std::string> class_names = {"background", "organ"};
  int resolution = 64;  // the model's own square grid; images are resized to it and back
  model::ColorMode color = model::ColorMode::kAuto;  // auto | gray | rgb (model/choices.h)
  // Only the image's content goes on the grid (model::ContentRegion: its dark frame is cropped);
  // a model file records it, so a trained model places images as it was trained.
  bool crop_to_content = true;
  int levels = 4;
  int base_channels = 8;      // denoiser width at full resolution
  int encoder_channels = 16;  // image-encoder width at full resolution
  std::string checkpoint;     // model file to start from; empty: a fresh model
  D3pmConfig d3pm;
  GaussianConfig gaussian;
  LossConfig loss;
  AugmentConfig augment;
  bool click_input = true;        // clicks as network inputs too (model/click_guidance.h)
  double simulated_clicks = 0.8;  // chance a dense mask is shown simulated clicks
  // How the clicks are drawn as inputs: gaussian | geodesic (model/choices.h).
  model::ClickGuidanceKind click_guidance = model::ClickGuidanceKind::kGeodesic;
};

struct SamplerConfig {
  int samples = 16;  // N stochastic samples per image
  int steps = 50;    // denoising steps per sample; 0 or more than T: T (d3pm: respaced)
  // Parallel sampler nodes an inference request is split across; 0: one per serving device (each
  // GPU when compute.device is cuda or auto on a machine with several, else 1).
  int shards = 0;
  int memory_budget_mb = 512;
  // A click's first answer, drawn on a sampler thread of its own (so it never waits behind the
  // image a sampler has in hand) and published as a preview (MaskResult.preview) until the final
  // mask of the same click comes: preview_samples samples (0: no previews, and no thread) of
  // preview_steps steps (0 or more than T: the method's T, as `steps`).
  int preview_samples = 4;
  int preview_steps = 10;
};

struct AggregatorConfig {
  model::AggregationRule rule = model::AggregationRule::kDensity;
  double threshold = 0.5;          // threshold rule: minimum vote fraction of a class
  double density_sigma = 2.0;      // density rule: Gaussian smoothing of vote maps, model pixels
  double density_threshold = 0.6;  // density rule: fraction of the smoothed map's peak
  double otsu_floor = 0.05;        // otsu rule: least smoothed vote density that is foreground
  // A click the drawn mask gets wrong corrects the pixels within click_reach times its geodesic
  // distance to the mask's nearest pixel of its class (model::ClickCorrections); 0: off.
  double click_reach = 2.0;
  // The mask's boundaries move onto the image's edges within edge_band grid cells, at the image's
  // own resolution (model::SnapToEdges); 0: off.
  double edge_band = 1.5;
};

struct TrainerConfig {
  int batch_size = 8;
  double learning_rate = 2e-3;
  uint64_t seed = 1;
  // clickdiffd: train continuously on the stored supervision and snapshot a new model version
  // every `snapshot_every_steps` steps or `snapshot_seconds` seconds, whichever comes first.
  bool continuous = true;
  int snapshot_every_steps = 200;
  double snapshot_seconds = 60;
  double recent_weight = 4;  // weight of examples whose clicks changed since the last version
  // Model versions kept in RocksDB (older ones are deleted, with their model-update records and
  // per-image metrics); 0: all.
  int keep_versions = 10;
  // Model versions whose learning-curve records (per-version metrics and fresh-click checks, one
  // per dataset and version) are kept; older ones are deleted. 0: all.
  int keep_curve_versions = 10000;
  // What the trainer's replay holds in memory (learning/replay.h): beyond it images wait in the
  // store and take turns. 0: no limit.
  int replay_budget_mb = 256;
  // Training is tied to supervision: at most this many steps per click or training label received
  // in all, after which the trainer waits for more; 0: no limit. Training on a few clicks without
  // end overfits them (masks shrink to the clicks).
  int steps_per_click = 16;
  // `clickdiff train`: this share of the supervised images is held out of training and the loss
  // on them evaluated every `validate_every` steps; the weights kept are the latest whose loss is
  // at most (1 + held_out_tolerance) x the lowest, so a longer run does not end on the collapsed
  // weights of clicks learnt by heart (0, or fewer than 2 images to hold out: the last weights).
  // clickdiffd with `held_out_images` > 0: the same share of the clicked images, at most the
  // `held_out_images` newest of them, is held out, and a snapshot whose loss on them is over
  // (1 + held_out_tolerance) x the lowest a published version had is not published
  // (learning/version_gate.h). 0 (the default): no gate; measured no help yet
  // (docs/experiments.md). `ema_decay` > 0 keeps, evaluates and saves a moving average of the
  // weights.
  double held_out = 0.1;
  int held_out_images = 0;
  int validate_every = 100;
  double held_out_tolerance = 0.25;
  double ema_decay = 0.99;
};

// Teacher-student (paper 004) in clickdiffd's trainer. The served model is an exponential moving
// average of the student. At each new version the teacher labels up to `images_per_round` images
// that have no supervision (those labelled longest ago first) by the majority vote of `samples`
// samples, keeping pixels whose vote share reaches `confidence`; the student trains on clicks plus
// these pseudo-labels, their weight ramped linearly from 0 to `weight` over `ramp_steps` steps.
// mode "ema": the teacher is the moving average. mode "twin": a co-trained twin (initialised on its
// own when the model starts from scratch, else a copy of the start) trains on the same clicks
// alongside the student, and each labels the images for the other (cross pseudo-supervision both
// ways); training and labelling cost twice as much.
struct TeacherConfig {
  bool enabled = true;
  TeacherMode mode = TeacherMode::kEma;
  double ema_decay = 0.99;  // per training step
  int samples = 8;
  int steps = 20;  // denoising steps per teacher sample
  double confidence = 0.9;
  double weight = 1.0;
  int ramp_steps = 500;
  int images_per_round = 16;
  // A clicked image's own served mask labels its unclicked pixels (learning/replay.h), in place
  // of "unclicked = background" (focal loss only), in a share min(1, weight x ramp) of the image's
  // training.
  bool clicked_masks = true;
};

struct ComputeConfig {
  model::DeviceSpec device;  // cpu (default) | cuda | cuda:N | auto
  int torch_threads = 0;     // intra-op threads per worker; 0: the cores divided among
                             // clickdiffd's samplers and trainer (offline: all cores)
};

struct LimitsConfig {
  int64_t max_payload_bytes = 16 << 20;
  int max_image_side = 4096;
  // Events inside the graph, and their records' bytes in MiB, at either of which the consumer
  // pauses (it resumes at half of both).
  int max_in_flight = 1024;
  int max_in_flight_mb = 64;
  // A click may overtake its image (topics are read independently): it waits until the images
  // topic was read this far past the click's time, or was at its end this long, then goes to the
  // dead-letter topic as a click for an unknown image (nodes/click_intake.h).
  int64_t pending_click_timeout_ms = 60000;
};

struct LoggingConfig {
  std::string level = "info";  // trace | debug | info | warn | error | off
};

struct Config {
  Mode mode = Mode::kEmbedded;
  KafkaConfig kafka;
  StoreConfig store;
  ZmqConfig zmq;
  ModelConfig model;
  SamplerConfig sampler;
  AggregatorConfig aggregator;
  TrainerConfig trainer;
  TeacherConfig teacher;
  ComputeConfig compute;
  LimitsConfig limits;
  LoggingConfig logging;
};

}  // namespace clickdiff
