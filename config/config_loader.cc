#include "config/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>

extern char** environ;  // POSIX

namespace clickdiff {
namespace {

constexpr char kEnvPrefix[] = "CLICKDIFF_";
constexpr char kConfigPathVariable[] = "CLICKDIFF_CONFIG";

// Where a value came from, for error messages: "file.yaml:12" or "--set a.b=1".
using Origins = std::map<std::string, std::string>;

// One configuration key: how to read it into a Config and write it back out.
struct FieldSpec {
  std::string key;
  std::string allowed;  // human-readable allowed values, used in errors and --help
  bool is_map = false;  // a pass-through string map whose sub-keys are free
  // Decodes `node` into `config`; the error message names what is allowed, not the key.
  std::function<Status(const YAML::Node& node, Config& config)> decode;
  std::function<YAML::Node(const Config& config)> encode;
};

template <typename T>
using Accessor = std::function<T&(Config&)>;

template <typename T>
std::function<YAML::Node(const Config&)> Encoder(const Accessor<T>& access) {
  return [access](const Config& config) {
    Config copy = config;
    return YAML::Node(access(copy));
  };
}

std::string Describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

template <typename T>
Status ReadScalar(const YAML::Node& node, const std::string& what, T* out) {
  if (!node.IsScalar()) return InvalidArgument("expected " + what + ", got " + Describe(node));
  try {
    *out = node.as<T>();
  } catch (const YAML::Exception&) {
    return InvalidArgument("expected " + what + ", got " + Describe(node));
  }
  return Status::Ok();
}

std::string FormatNumber(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

template <typename T>
FieldSpec Integer(std::string key, const Accessor<T>& access, int64_t lo, int64_t hi) {
  std::string allowed = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) -> Status {
            int64_t v = 0;
            CLICKDIFF_RETURN_IF_ERROR(ReadScalar(node, allowed, &v));
            if (v < lo || v > hi)
              return OutOfRange("expected " + allowed + ", got " + node.Scalar());
            access(config) = static_cast<T>(v);
            return Status::Ok();
          },
          Encoder<T>(access)};
}

// A real number in the interval from lo to hi; `open_low` excludes lo itself.
FieldSpec Real(std::string key, const Accessor<double>& access, double lo, double hi,
               bool open_low = false) {
  std::string allowed = std::string("a number in ") + (open_low ? "(" : "[") + FormatNumber(lo) +
                        ", " + FormatNumber(hi) + "]";
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) -> Status {
            double v = 0;
            CLICKDIFF_RETURN_IF_ERROR(ReadScalar(node, allowed, &v));
            bool inside = std::isfinite(v) && (open_low ? v > lo : v >= lo) && v <= hi;
            if (!inside) return OutOfRange("expected " + allowed + ", got " + node.Scalar());
            access(config) = v;
            return Status::Ok();
          },
          Encoder<double>(access)};
}

FieldSpec Boolean(std::string key, const Accessor<bool>& access) {
  std::string allowed = "true or false";
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) {
            return ReadScalar(node, allowed, &access(config));
          },
          Encoder<bool>(access)};
}

// A string; `check` returns an empty string when the value is acceptable, else what is wrong.
FieldSpec Text(std::string key, const Accessor<std::string>& access, const std::string& allowed,
               const std::function<std::string(const std::string&)>& check = nullptr) {
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) -> Status {
            std::string v;
            CLICKDIFF_RETURN_IF_ERROR(ReadScalar(node, allowed, &v));
            if (check) {
              std::string problem = check(v);
              if (!problem.empty()) return InvalidArgument(problem + " (expected " + allowed + ")");
            }
            access(config) = v;
            return Status::Ok();
          },
          Encoder<std::string>(access)};
}

FieldSpec Choice(std::string key, const Accessor<std::string>& access,
                 const std::vector<std::string>& choices) {
  std::string allowed = "one of";
  for (size_t i = 0; i < choices.size(); ++i) {
    allowed += (i == 0 ? " '" : ", '") + choices[i] + "'";
  }
  return Text(std::move(key), access, allowed, [choices](const std::string& v) {
    bool known = std::find(choices.begin(), choices.end(), v) != choices.end();
    return known ? std::string() : "'" + v + "' is not allowed";
  });
}

// One of the names in `names`, stored as the enum they name.
// The type itself, in a context that does not take part in template argument deduction.
template <typename T>
struct NonDeduced {
  using type = T;
};

template <typename E, size_t N>
FieldSpec Named(std::string key, const typename NonDeduced<Accessor<E>>::type& access,
                const std::array<EnumName<E>, N>& names) {
  const std::string allowed = OneOf(names);
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) -> Status {
            std::string v;
            CLICKDIFF_RETURN_IF_ERROR(ReadScalar(node, allowed, &v));
            std::optional<E> value = ValueOf(names, v);
            if (!value)
              return InvalidArgument("'" + v + "' is not allowed (expected " + allowed + ")");
            access(config) = *value;
            return Status::Ok();
          },
          [access, names](const Config& config) {
            Config copy = config;
            return YAML::Node(std::string(NameOf(names, access(copy))));
          }};
}

FieldSpec Device(std::string key, const Accessor<model::DeviceSpec>& access) {
  const std::string allowed = "cpu, cuda, cuda:N or auto";
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) -> Status {
            std::string v;
            CLICKDIFF_RETURN_IF_ERROR(ReadScalar(node, allowed, &v));
            Result<model::DeviceSpec> device = model::ParseDevice(v);
            if (!device.ok()) return device.status();
            access(config) = *device;
            return Status::Ok();
          },
          [access](const Config& config) {
            Config copy = config;
            return YAML::Node(model::DeviceName(access(copy)));
          }};
}

FieldSpec TextList(std::string key, const Accessor<std::vector<std::string>>& access) {
  std::string allowed = "a list of non-empty strings";
  return {std::move(key), allowed, false,
          [=](const YAML::Node& node, Config& config) -> Status {
            if (!node.IsSequence())
              return InvalidArgument("expected " + allowed + ", got " + Describe(node));
            std::vector<std::string> values;
            for (const auto& item : node) {
              std::string v;
              CLICKDIFF_RETURN_IF_ERROR(ReadScalar(item, allowed, &v));
              if (v.empty())
                return InvalidArgument("expected " + allowed + ", got an empty string");
              values.push_back(v);
            }
            access(config) = values;
            return Status::Ok();
          },
          Encoder<std::vector<std::string>>(access)};
}

FieldSpec TextMap(std::string key, const Accessor<std::map<std::string, std::string>>& access) {
  std::string allowed = "a mapping of strings to strings";
  return {std::move(key), allowed, true,
          [=](const YAML::Node& node, Config& config) -> Status {
            if (node.IsNull()) return Status::Ok();
            if (!node.IsMap())
              return InvalidArgument("expected " + allowed + ", got " + Describe(node));
            auto& target = access(config);
            for (const auto& entry : node) {
              std::string k;
              std::string v;
              CLICKDIFF_RETURN_IF_ERROR(ReadScalar(entry.first, allowed, &k));
              CLICKDIFF_RETURN_IF_ERROR(ReadScalar(entry.second, allowed, &v));
              target[k] = v;
            }
            return Status::Ok();
          },
          [access](const Config& config) {
            Config copy = config;
            YAML::Node node(YAML::NodeType::Map);
            for (const auto& [k, v] : access(copy)) node[k] = v;
            return node;
          }};
}

std::string KafkaTopicProblem(const std::string& name) {
  if (name.size() > 249) return "longer than 249 characters";
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return "'" + name + "' has the character '" + std::string(1, c) + "'";
    }
  }
  return "";
}

std::string RequiredTopicProblem(const std::string& name) {
  return name.empty() ? "must not be empty" : KafkaTopicProblem(name);
}

std::string EndpointProblem(const std::string& endpoint) {
  for (const char* scheme : {"tcp://", "ipc://", "inproc://"}) {
    if (endpoint.rfind(scheme, 0) == 0 && endpoint.size() > std::string(scheme).size()) return "";
  }
  return "'" + endpoint + "' is not a ZeroMQ endpoint";
}

std::string Z85KeyProblem(const std::string& key) {
  if (key.empty() || key.size() == 40) return "";
  return "a Z85 key has 40 characters, this one has " + std::to_string(key.size());
}

std::string NonEmptyProblem(const std::string& v) { return v.empty() ? "must not be empty" : ""; }

// The table of every configuration key, in the order DumpConfig writes them.
const std::vector<FieldSpec>& Fields() {
  static const std::vector<FieldSpec> fields = [] {
    constexpr int64_t kIntMax = std::numeric_limits<int>::max();
    std::vector<FieldSpec> f;
    f.push_back(Named(
        "mode", [](Config & c) -> auto& { return c.mode; }, kModeNames));
    f.push_back(Text(
        "kafka.bootstrap_servers", [](Config & c) -> auto& { return c.kafka.bootstrap_servers; },
        "host:port[,host:port...]; empty in embedded mode"));
    f.push_back(Integer<int>(
        "kafka.embedded_brokers", [](Config & c) -> auto& { return c.kafka.embedded_brokers; }, 1,
        16));
    f.push_back(Integer<int>(
        "kafka.partitions", [](Config & c) -> auto& { return c.kafka.partitions; }, 1, 1024));
    f.push_back(Text(
        "kafka.group_id", [](Config & c) -> auto& { return c.kafka.group_id; },
        "a consumer group id", NonEmptyProblem));
    f.push_back(Text(
        "kafka.client_id", [](Config & c) -> auto& { return c.kafka.client_id; }, "a client id",
        NonEmptyProblem));
    f.push_back(Text(
        "kafka.instance_id", [](Config & c) -> auto& { return c.kafka.instance_id; },
        "auto, empty (dynamic membership) or a group.instance.id", KafkaTopicProblem));
    f.push_back(Text(
        "kafka.topics.images", [](Config & c) -> auto& { return c.kafka.topics.images; },
        "a Kafka topic name", RequiredTopicProblem));
    f.push_back(Text(
        "kafka.topics.clicks", [](Config & c) -> auto& { return c.kafka.topics.clicks; },
        "a Kafka topic name", RequiredTopicProblem));
    f.push_back(Text(
        "kafka.topics.labels", [](Config & c) -> auto& { return c.kafka.topics.labels; },
        "a Kafka topic name", RequiredTopicProblem));
    f.push_back(Text(
        "kafka.topics.model_updates",
        [](Config & c) -> auto& { return c.kafka.topics.model_updates; }, "a Kafka topic name",
        RequiredTopicProblem));
    f.push_back(Text(
        "kafka.topics.metrics", [](Config & c) -> auto& { return c.kafka.topics.metrics; },
        "a Kafka topic name", RequiredTopicProblem));
    f.push_back(Text(
        "kafka.topics.masks", [](Config & c) -> auto& { return c.kafka.topics.masks; },
        "a Kafka topic name, or empty for none", KafkaTopicProblem));
    f.push_back(Text(
        "kafka.topics.dlq_suffix", [](Config & c) -> auto& { return c.kafka.topics.dlq_suffix; },
        "a topic name suffix", RequiredTopicProblem));
    f.push_back(TextMap(
        "kafka.properties", [](Config & c) -> auto& { return c.kafka.properties; }));
    f.push_back(TextMap(
        "kafka.property_files", [](Config & c) -> auto& { return c.kafka.property_files; }));
    f.push_back(Text(
        "store.path", [](Config & c) -> auto& { return c.store.path; }, "a directory path",
        NonEmptyProblem));
    f.push_back(Boolean(
        "store.sync", [](Config & c) -> auto& { return c.store.sync; }));
    f.push_back(Choice("store.compression", [](Config & c) -> auto& { return c.store.compression; },
                       {"lz4", "zstd", "none"}));
    f.push_back(Integer<int>(
        "store.block_cache_mb", [](Config & c) -> auto& { return c.store.block_cache_mb; }, 0,
        1 << 20));
    f.push_back(Integer<int>(
        "store.write_buffer_mb", [](Config & c) -> auto& { return c.store.write_buffer_mb; }, 0,
        1 << 20));
    f.push_back(Text(
        "zmq.publish_endpoint", [](Config & c) -> auto& { return c.zmq.publish_endpoint; },
        "tcp://, ipc:// or inproc:// endpoint", EndpointProblem));
    f.push_back(Text(
        "zmq.query_endpoint", [](Config & c) -> auto& { return c.zmq.query_endpoint; },
        "tcp://, ipc:// or inproc:// endpoint", EndpointProblem));
    f.push_back(Integer<int>(
        "zmq.send_high_water_mark", [](Config & c) -> auto& { return c.zmq.send_high_water_mark; },
        1, 1000000));
    f.push_back(Integer<int>(
        "zmq.late_joiner_budget_mb",
        [](Config & c) -> auto& { return c.zmq.late_joiner_budget_mb; }, 0, 1 << 20));
    f.push_back(Boolean(
        "zmq.curve.enabled", [](Config & c) -> auto& { return c.zmq.curve.enabled; }));
    f.push_back(Text(
        "zmq.curve.server_public_key",
        [](Config & c) -> auto& { return c.zmq.curve.server_public_key; },
        "a Z85 key of 40 characters", Z85KeyProblem));
    f.push_back(Text(
        "zmq.curve.server_secret_key",
        [](Config & c) -> auto& { return c.zmq.curve.server_secret_key; },
        "a Z85 key of 40 characters", Z85KeyProblem));
    f.push_back(Text(
        "zmq.curve.server_key_file",
        [](Config & c) -> auto& { return c.zmq.curve.server_key_file; },
        "a key pair file of clickdiff keygen"));
    f.push_back(TextList(
        "zmq.curve.client_keys", [](Config & c) -> auto& { return c.zmq.curve.client_keys; }));
    f.push_back(Text(
        "zmq.curve.client_keys_dir",
        [](Config & c) -> auto& { return c.zmq.curve.client_keys_dir; },
        "a directory of clients' .pub key files"));
    f.push_back(Text(
        "zmq.curve.client_key_file",
        [](Config & c) -> auto& { return c.zmq.curve.client_key_file; },
        "a key pair file of clickdiff keygen"));
    f.push_back(Named(
        "model.method", [](Config & c) -> auto& { return c.model.method; }, model::kMethodNames));
    f.push_back(Integer<int>(
        "model.num_classes", [](Config & c) -> auto& { return c.model.num_classes; }, 2, 255));
    f.push_back(TextList(
        "model.class_names", [](Config & c) -> auto& { return c.model.class_names; }));
    f.push_back(Integer<int>(
        "model.resolution", [](Config & c) -> auto& { return c.model.resolution; }, 16, 1024));
    f.push_back(Named(
        "model.color", [](Config & c) -> auto& { return c.model.color; }, model::kColorModeNames));
    f.push_back(Integer<int>(
        "model.levels", [](Config & c) -> auto& { return c.model.levels; }, 1, 6));
    f.push_back(Integer<int>(
        "model.base_channels", [](Config & c) -> auto& { return c.model.base_channels; }, 4, 512));
    f.push_back(Integer<int>(
        "model.encoder_channels", [](Config & c) -> auto& { return c.model.encoder_channels; }, 4,
        512));
    f.push_back(Text(
        "model.checkpoint", [](Config & c) -> auto& { return c.model.checkpoint; },
        "a model file path, or empty"));
    f.push_back(Integer<int>(
        "model.d3pm.steps", [](Config & c) -> auto& { return c.model.d3pm.steps; }, 1, 10000));
    f.push_back(Real(
        "model.d3pm.beta_start", [](Config & c) -> auto& { return c.model.d3pm.beta_start; }, 0, 1,
        true));
    f.push_back(Real(
        "model.d3pm.beta_end", [](Config & c) -> auto& { return c.model.d3pm.beta_end; }, 0, 1,
        true));
    f.push_back(Real(
        "model.d3pm.prior_share", [](Config & c) -> auto& { return c.model.d3pm.prior_share; }, 0,
        1));
    f.push_back(Integer<int>(
        "model.gaussian.steps", [](Config & c) -> auto& { return c.model.gaussian.steps; }, 1,
        1000));
    f.push_back(Real(
        "model.gaussian.beta_min", [](Config & c) -> auto& { return c.model.gaussian.beta_min; }, 0,
        100, true));
    f.push_back(Real(
        "model.gaussian.beta_max", [](Config & c) -> auto& { return c.model.gaussian.beta_max; }, 0,
        100, true));
    f.push_back(Integer<int>(
        "model.gaussian.latent_dim",
        [](Config & c) -> auto& { return c.model.gaussian.latent_dim; }, 1, 1024));
    f.push_back(Named(
        "model.loss.kind", [](Config & c) -> auto& { return c.model.loss.kind; },
        model::kLossKindNames));
    f.push_back(Real(
        "model.loss.focal_gamma", [](Config & c) -> auto& { return c.model.loss.focal_gamma; }, 0,
        10));
    f.push_back(Real(
        "model.loss.focal_alpha", [](Config & c) -> auto& { return c.model.loss.focal_alpha; }, 0,
        1, true));
    f.push_back(Real(
        "model.loss.dense_weight", [](Config & c) -> auto& { return c.model.loss.dense_weight; }, 0,
        1, true));
    f.push_back(Real(
        "model.loss.ms_weight", [](Config & c) -> auto& { return c.model.loss.ms_weight; }, 0,
        1000));
    f.push_back(Real(
        "model.loss.cv_weight", [](Config & c) -> auto& { return c.model.loss.cv_weight; }, 0,
        1000));
    f.push_back(Real(
        "model.loss.cv_temperature",
        [](Config & c) -> auto& { return c.model.loss.cv_temperature; }, 0, 10, true));
    f.push_back(Real(
        "model.loss.tv_weight", [](Config & c) -> auto& { return c.model.loss.tv_weight; }, 0,
        1000));
    f.push_back(Real(
        "model.loss.vlb_weight", [](Config & c) -> auto& { return c.model.loss.vlb_weight; }, 0,
        100));
    f.push_back(Boolean(
        "model.click_input", [](Config & c) -> auto& { return c.model.click_input; }));
    f.push_back(Boolean(
        "model.crop_to_content", [](Config & c) -> auto& { return c.model.crop_to_content; }));
    f.push_back(Named(
        "model.click_guidance", [](Config & c) -> auto& { return c.model.click_guidance; },
        model::kClickGuidanceNames));
    f.push_back(Real(
        "model.simulated_clicks", [](Config & c) -> auto& { return c.model.simulated_clicks; }, 0,
        1));
    f.push_back(Boolean(
        "model.augment.flips", [](Config & c) -> auto& { return c.model.augment.flips; }));
    f.push_back(Boolean(
        "model.augment.rotations", [](Config & c) -> auto& { return c.model.augment.rotations; }));
    f.push_back(Real(
        "model.augment.intensity", [](Config & c) -> auto& { return c.model.augment.intensity; }, 0,
        1));
    f.push_back(Real(
        "model.augment.noise", [](Config & c) -> auto& { return c.model.augment.noise; }, 0, 1));
    f.push_back(Integer<int>(
        "sampler.samples", [](Config & c) -> auto& { return c.sampler.samples; }, 1, 4096));
    f.push_back(Integer<int>(
        "sampler.steps", [](Config & c) -> auto& { return c.sampler.steps; }, 0, 10000));
    f.push_back(Integer<int>(
        "sampler.shards", [](Config & c) -> auto& { return c.sampler.shards; }, 0, 256));
    f.push_back(Integer<int>(
        "sampler.memory_budget_mb", [](Config & c) -> auto& { return c.sampler.memory_budget_mb; },
        16, 1 << 20));
    f.push_back(Integer<int>(
        "sampler.preview_samples", [](Config & c) -> auto& { return c.sampler.preview_samples; }, 0,
        4096));
    f.push_back(Integer<int>(
        "sampler.preview_steps", [](Config & c) -> auto& { return c.sampler.preview_steps; }, 0,
        10000));
    f.push_back(Named(
        "aggregator.rule", [](Config & c) -> auto& { return c.aggregator.rule; },
        model::kAggregationRuleNames));
    f.push_back(Real(
        "aggregator.threshold", [](Config & c) -> auto& { return c.aggregator.threshold; }, 0, 1,
        true));
    f.push_back(Real(
        "aggregator.density_sigma", [](Config & c) -> auto& { return c.aggregator.density_sigma; },
        0, 64, true));
    f.push_back(Real(
        "aggregator.density_threshold",
        [](Config & c) -> auto& { return c.aggregator.density_threshold; }, 0, 1, true));
    f.push_back(Real(
        "aggregator.otsu_floor", [](Config & c) -> auto& { return c.aggregator.otsu_floor; }, 0,
        0.99));
    f.push_back(Real(
        "aggregator.click_reach", [](Config & c) -> auto& { return c.aggregator.click_reach; }, 0,
        8));
    f.push_back(Real(
        "aggregator.edge_band", [](Config & c) -> auto& { return c.aggregator.edge_band; }, 0, 4));
    f.push_back(Integer<int>(
        "trainer.batch_size", [](Config & c) -> auto& { return c.trainer.batch_size; }, 1, 4096));
    f.push_back(Real(
        "trainer.learning_rate", [](Config & c) -> auto& { return c.trainer.learning_rate; }, 0, 1,
        true));
    f.push_back(Integer<uint64_t>(
        "trainer.seed", [](Config & c) -> auto& { return c.trainer.seed; }, 0,
        std::numeric_limits<int64_t>::max()));
    f.push_back(Boolean(
        "trainer.continuous", [](Config & c) -> auto& { return c.trainer.continuous; }));
    f.push_back(Integer<int>(
        "trainer.snapshot_every_steps",
        [](Config & c) -> auto& { return c.trainer.snapshot_every_steps; }, 1, 1 << 30));
    f.push_back(Real(
        "trainer.snapshot_seconds", [](Config & c) -> auto& { return c.trainer.snapshot_seconds; },
        0, 1e9, true));
    f.push_back(Integer<int>(
        "trainer.keep_versions", [](Config & c) -> auto& { return c.trainer.keep_versions; }, 0,
        1 << 30));
    f.push_back(Integer<int>(
        "trainer.keep_curve_versions",
        [](Config & c) -> auto& { return c.trainer.keep_curve_versions; }, 0, 1 << 30));
    f.push_back(Integer<int>(
        "trainer.replay_budget_mb", [](Config & c) -> auto& { return c.trainer.replay_budget_mb; },
        0, 1 << 20));
    f.push_back(Real(
        "trainer.recent_weight", [](Config & c) -> auto& { return c.trainer.recent_weight; }, 1,
        1000));
    f.push_back(Integer<int>(
        "trainer.steps_per_click", [](Config & c) -> auto& { return c.trainer.steps_per_click; }, 0,
        1 << 30));
    f.push_back(Real(
        "trainer.held_out", [](Config & c) -> auto& { return c.trainer.held_out; }, 0, 0.5));
    f.push_back(Integer<int>(
        "trainer.held_out_images", [](Config & c) -> auto& { return c.trainer.held_out_images; }, 0,
        1000));
    f.push_back(Integer<int>(
        "trainer.validate_every", [](Config & c) -> auto& { return c.trainer.validate_every; }, 1,
        1 << 30));
    f.push_back(Real(
        "trainer.held_out_tolerance",
        [](Config & c) -> auto& { return c.trainer.held_out_tolerance; }, 0, 100));
    f.push_back(Real(
        "trainer.ema_decay", [](Config & c) -> auto& { return c.trainer.ema_decay; }, 0, 0.9999));
    f.push_back(Boolean(
        "teacher.enabled", [](Config & c) -> auto& { return c.teacher.enabled; }));
    f.push_back(Named(
        "teacher.mode", [](Config & c) -> auto& { return c.teacher.mode; }, kTeacherModeNames));
    f.push_back(Real(
        "teacher.ema_decay", [](Config & c) -> auto& { return c.teacher.ema_decay; }, 0, 1));
    f.push_back(Integer<int>(
        "teacher.samples", [](Config & c) -> auto& { return c.teacher.samples; }, 1, 1024));
    f.push_back(Integer<int>(
        "teacher.steps", [](Config & c) -> auto& { return c.teacher.steps; }, 0, 100000));
    f.push_back(Real(
        "teacher.confidence", [](Config & c) -> auto& { return c.teacher.confidence; }, 0, 1,
        true));
    f.push_back(Real(
        "teacher.weight", [](Config & c) -> auto& { return c.teacher.weight; }, 0, 100));
    f.push_back(Integer<int>(
        "teacher.ramp_steps", [](Config & c) -> auto& { return c.teacher.ramp_steps; }, 0,
        1 << 30));
    f.push_back(Integer<int>(
        "teacher.images_per_round", [](Config & c) -> auto& { return c.teacher.images_per_round; },
        0, 1 << 20));
    f.push_back(Boolean(
        "teacher.clicked_masks", [](Config & c) -> auto& { return c.teacher.clicked_masks; }));
    f.push_back(Device(
        "compute.device", [](Config & c) -> auto& { return c.compute.device; }));
    f.push_back(Integer<int>(
        "compute.torch_threads", [](Config & c) -> auto& { return c.compute.torch_threads; }, 0,
        1024));
    f.push_back(Integer<int64_t>(
        "limits.max_payload_bytes", [](Config & c) -> auto& { return c.limits.max_payload_bytes; },
        1024, int64_t{1} << 30));
    f.push_back(Integer<int>(
        "limits.max_image_side", [](Config & c) -> auto& { return c.limits.max_image_side; }, 8,
        65536));
    f.push_back(Integer<int>(
        "limits.max_in_flight", [](Config & c) -> auto& { return c.limits.max_in_flight; }, 1,
        kIntMax));
    f.push_back(Integer<int>(
        "limits.max_in_flight_mb", [](Config & c) -> auto& { return c.limits.max_in_flight_mb; }, 1,
        1 << 20));
    f.push_back(Integer<int64_t>(
        "limits.pending_click_timeout_ms",
        [](Config & c) -> auto& { return c.limits.pending_click_timeout_ms; }, 0,
        int64_t{7} * 24 * 3600 * 1000));
    f.push_back(Choice("logging.level", [](Config & c) -> auto& { return c.logging.level; },
                       {"trace", "debug", "info", "warn", "error", "off"}));
    return f;
  }();
  return fields;
}

const FieldSpec* FindField(const std::string& key) {
  for (const auto& f : Fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

bool IsSection(const std::string& key) {
  const std::string prefix = key + ".";
  return std::any_of(Fields().begin(), Fields().end(),
                     [&](const FieldSpec& f) { return f.key.rfind(prefix, 0) == 0; });
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean X?)" for the closest known key or section, or "".
std::string Suggestion(const std::string& key) {
  std::string best;
  size_t best_distance = 4;  // suggest only close matches
  auto consider = [&](const std::string& candidate) {
    size_t d = EditDistance(key, candidate);
    if (d < best_distance) best_distance = d, best = candidate;
  };
  for (const auto& f : Fields()) {
    consider(f.key);
    for (size_t dot = f.key.find('.'); dot != std::string::npos; dot = f.key.find('.', dot + 1)) {
      consider(f.key.substr(0, dot));
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string Where(const YAML::Node& node, const std::string& key, const std::string& source,
                  const Origins& origins) {
  auto it = origins.find(key);
  if (it != origins.end()) return it->second;
  if (node.Mark().is_null()) return source;
  return source + ":" + std::to_string(node.Mark().line + 1);
}

Status DecodeSection(const YAML::Node& section, const std::string& prefix,
                     const std::string& source, const Origins& origins, Config& config) {
  for (const auto& entry : section) {
    const std::string name = entry.first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = entry.second;
    const std::string where = Where(value.IsNull() ? entry.first : value, key, source, origins);
    if (const FieldSpec* field = FindField(key)) {
      Status s = field->decode(value, config);
      if (!s.ok()) return Status(s.code(), where + ": " + key + ": " + s.message());
    } else if (IsSection(key)) {
      if (value.IsNull()) continue;  // an empty section keeps its defaults
      if (!value.IsMap()) {
        return InvalidArgument(where + ": " + key + ": expected a section of keys, got " +
                               Describe(value));
      }
      CLICKDIFF_RETURN_IF_ERROR(DecodeSection(value, key, source, origins, config));
    } else {
      return InvalidArgument(where + ": " + key + ": unknown key" + Suggestion(key));
    }
  }
  return Status::Ok();
}

std::vector<std::string> SplitKey(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream in(key);
  for (std::string part; std::getline(in, part, '.');) parts.push_back(part);
  return parts;
}

// Sets root[key path] = value, creating sections on the way. Map fields take the rest of the
// path, dots included, as one sub-key.
Status ApplyOverride(YAML::Node& root, const std::string& key, const std::string& text,
                     const std::string& origin, Origins& origins) {
  std::vector<std::string> path;
  std::string rest;
  for (const auto& f : Fields()) {
    if (f.key == key) {
      path = SplitKey(key);
    } else if (f.is_map && key.rfind(f.key + ".", 0) == 0) {
      path = SplitKey(f.key);
      rest = key.substr(f.key.size() + 1);
    }
  }
  if (path.empty()) return InvalidArgument(origin + ": " + key + ": unknown key" + Suggestion(key));
  YAML::Node value;
  try {
    value = rest.empty() ? YAML::Load(text) : YAML::Node(text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(origin + ": " + key + ": not a YAML value: " + e.msg);
  }
  YAML::Node cursor(root);
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (!cursor[path[i]] || !cursor[path[i]].IsMap())
      cursor[path[i]] = YAML::Node(YAML::NodeType::Map);
    cursor.reset(cursor[path[i]]);
  }
  if (rest.empty()) {
    cursor[path.back()] = value;
  } else {
    if (!cursor[path.back()] || !cursor[path.back()].IsMap()) {
      cursor[path.back()] = YAML::Node(YAML::NodeType::Map);
    }
    YAML::Node map_node = cursor[path.back()];
    map_node[rest] = value;
  }
  origins[key] = origin;
  return Status::Ok();
}

Status ApplyOverrides(YAML::Node& root, const ConfigOverrides& overrides, Origins& origins) {
  for (const auto& [name, value] : overrides.environment) {
    if (name == kConfigPathVariable) continue;
    const FieldSpec* match = nullptr;
    for (const auto& f : Fields()) {
      if (EnvironmentVariableFor(f.key) == name) match = &f;
    }
    if (match == nullptr) {
      return InvalidArgument("environment: " + name + " is not a configuration variable" +
                             " (they are CLICKDIFF_ plus a key in upper case, e.g. " +
                             EnvironmentVariableFor("model.method") + ")");
    }
    CLICKDIFF_RETURN_IF_ERROR(
        ApplyOverride(root, match->key, value, "environment " + name, origins));
  }
  for (const auto& assignment : overrides.set) {
    size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("--set " + assignment + ": expected key=value");
    }
    CLICKDIFF_RETURN_IF_ERROR(ApplyOverride(
        root, assignment.substr(0, eq), assignment.substr(eq + 1), "--set " + assignment, origins));
  }
  return Status::Ok();
}

// Checks that involve more than one key.
Status ValidateCombination(const Config& c) {
  if (c.mode == Mode::kEmbedded && !c.kafka.bootstrap_servers.empty()) {
    return InvalidArgument(
        "kafka.bootstrap_servers: must be empty in embedded mode (mode: embedded starts its own "
        "broker); set mode: external to use a cluster");
  }
  if (c.mode == Mode::kExternal && c.kafka.bootstrap_servers.empty()) {
    return InvalidArgument("kafka.bootstrap_servers: required in external mode");
  }
  if (static_cast<int>(c.model.class_names.size()) != c.model.num_classes) {
    return InvalidArgument("model.class_names: has " + std::to_string(c.model.class_names.size()) +
                           " names but model.num_classes is " +
                           std::to_string(c.model.num_classes));
  }
  if (c.model.resolution % (1 << (c.model.levels - 1)) != 0) {
    return InvalidArgument(
        "model.resolution: " + std::to_string(c.model.resolution) +
        " must be divisible by 2^(model.levels-1) = " + std::to_string(1 << (c.model.levels - 1)));
  }
  if (c.model.d3pm.beta_end < c.model.d3pm.beta_start) {
    return InvalidArgument("model.d3pm.beta_end: must not be below model.d3pm.beta_start");
  }
  if (c.model.gaussian.beta_max < c.model.gaussian.beta_min) {
    return InvalidArgument("model.gaussian.beta_max: must not be below model.gaussian.beta_min");
  }
  if (c.sampler.shards > c.sampler.samples) {
    return InvalidArgument("sampler.shards: " + std::to_string(c.sampler.shards) +
                           " shards cannot split " + std::to_string(c.sampler.samples) +
                           " samples (sampler.samples)");
  }
  if (c.trainer.held_out_images == 1) {
    return InvalidArgument(
        "trainer.held_out_images: 1 image cannot judge a version (the gate needs 2 or more; 0: no "
        "gate)");
  }
  for (const auto& [name, path] : c.kafka.property_files) {
    if (c.kafka.properties.count(name) != 0) {
      return InvalidArgument("kafka.property_files." + name +
                             ": also in kafka.properties; give the value one way");
    }
  }
  const ZmqCurveConfig& curve = c.zmq.curve;
  for (size_t i = 0; i < curve.client_keys.size(); ++i) {
    const std::string problem =
        curve.client_keys[i].empty() ? "is empty" : Z85KeyProblem(curve.client_keys[i]);
    if (!problem.empty()) {
      return InvalidArgument("zmq.curve.client_keys[" + std::to_string(i) + "]: " + problem);
    }
  }
  if (!curve.server_key_file.empty() &&
      !(curve.server_public_key.empty() && curve.server_secret_key.empty())) {
    return InvalidArgument(
        "zmq.curve: server_key_file or server_public_key and server_secret_key, not both");
  }
  if (curve.enabled && curve.server_key_file.empty() && curve.server_public_key.empty()) {
    return InvalidArgument(
        "zmq.curve: enabled needs the server's key: server_key_file (clickdiff keygen), or "
        "server_public_key (Z85, 40 characters; with server_secret_key where the server runs)");
  }
  return Status::Ok();
}

}  // namespace

std::string EnvironmentVariableFor(const std::string& key) {
  std::string name = kEnvPrefix;
  for (char c : key) name += c == '.' ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

std::map<std::string, std::string> ClickdiffEnvironment() {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    if (entry.rfind(kEnvPrefix, 0) != 0) continue;
    size_t eq = entry.find('=');
    if (eq != std::string::npos) vars[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return vars;
}

Result<Config> LoadConfigString(const std::string& yaml, const std::string& source,
                                const ConfigOverrides& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(source + ":" + std::to_string(e.mark.line + 1) +
                           ": not valid YAML: " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    return InvalidArgument(source + ": expected a mapping of sections at the top, got " +
                           Describe(root));
  }
  Origins origins;
  CLICKDIFF_RETURN_IF_ERROR(ApplyOverrides(root, overrides, origins));
  Config config;
  CLICKDIFF_RETURN_IF_ERROR(DecodeSection(root, "", source, origins, config));
  Status combined = ValidateCombination(config);
  if (!combined.ok()) return combined.WithContext(source);
  return config;
}

Result<Config> LoadConfigFile(const std::string& path, const ConfigOverrides& overrides) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot read the config file");
  std::stringstream text;
  text << in.rdbuf();
  return LoadConfigString(text.str(), path, overrides);
}

bool IsSecretConfigKey(const std::string& key) {
  if (key == "zmq.curve.server_secret_key") return true;
  const std::string prefix = "kafka.properties.";
  if (key.rfind(prefix, 0) != 0) return false;
  const std::string name = key.substr(prefix.size());
  for (const char* word : {"password", "secret", ".pem", "oauthbearer.config", "jaas"}) {
    if (name.find(word) != std::string::npos) return true;
  }
  return false;
}

std::string DumpConfig(const Config& config, bool show_secrets) {
  const std::string kRedacted = "<redacted>";
  YAML::Node root(YAML::NodeType::Map);
  for (const auto& f : Fields()) {
    std::vector<std::string> path = SplitKey(f.key);
    YAML::Node cursor(root);
    for (size_t i = 0; i + 1 < path.size(); ++i) {
      if (!cursor[path[i]]) cursor[path[i]] = YAML::Node(YAML::NodeType::Map);
      cursor.reset(cursor[path[i]]);
    }
    YAML::Node value = f.encode(config);
    if (!show_secrets && value.IsScalar() && !value.Scalar().empty() && IsSecretConfigKey(f.key)) {
      value = kRedacted;
    } else if (!show_secrets && value.IsMap()) {
      for (auto entry : value) {
        if (IsSecretConfigKey(f.key + "." + entry.first.as<std::string>()))
          entry.second = kRedacted;
      }
    }
    cursor[path.back()] = value;
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::pair<std::string, std::string>> DescribeConfigKeys() {
  std::vector<std::pair<std::string, std::string>> keys;
  for (const auto& f : Fields()) keys.emplace_back(f.key, f.allowed);
  return keys;
}

}  // namespace clickdiff
