#include "io/broker_faults.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>
#include <utility>

namespace clickdiff {
namespace {

struct NamedRequest {
  const char* name;
  int16_t api_key;  // the Kafka protocol's
};
// The requests a client of this service sends, by the names a plan uses.
constexpr std::array<NamedRequest, 12> kRequests{{
    {"produce", 0},
    {"fetch", 1},
    {"list_offsets", 2},
    {"metadata", 3},
    {"offset_commit", 8},
    {"offset_fetch", 9},
    {"find_coordinator", 10},
    {"join_group", 11},
    {"heartbeat", 12},
    {"leave_group", 13},
    {"sync_group", 14},
    {"init_producer_id", 22},
}};

std::optional<int16_t> ApiKey(const std::string& request) {
  for (const NamedRequest& r : kRequests) {
    if (request == r.name) return r.api_key;
  }
  return std::nullopt;
}

// A broker error (code > 0) by librdkafka's name for it.
std::optional<int> ErrorCode(const std::string& name) {
  const rd_kafka_err_desc* descs = nullptr;
  size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);
  for (size_t i = 0; i < count; ++i) {
    if (descs[i].code > 0 && descs[i].name != nullptr && name == descs[i].name) {
      return static_cast<int>(descs[i].code);
    }
  }
  return std::nullopt;
}

std::string SecondsText(double s) {
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

std::string Which(int broker) {
  return broker == 0 ? "every broker" : "broker " + std::to_string(broker);
}

// Limits that keep a plan's numbers sane: times that fit the clock, error lists that fit memory.
constexpr double kMaxSeconds = 1e6;  // about 11 days
constexpr int kMaxErrors = 100000;
constexpr int kMaxRttMs = 600000;

// Field `key` of `node` as a T, or an error naming the fault and the field.
template <typename T>
Result<T> Field(const YAML::Node& node, const std::string& key, const std::string& where) {
  try {
    return node[key].as<T>();
  } catch (const YAML::Exception&) {
    return InvalidArgument(where + ": " + key + ": '" + YAML::Dump(node[key]) + "' is not " +
                           (std::is_same_v<T, std::string> ? "a name" : "a number"));
  }
}

// A number of seconds in (0 or more than 0, per `positive`) .. kMaxSeconds.
Result<double> Seconds(const YAML::Node& node, const std::string& key, bool positive,
                       const std::string& where) {
  Result<double> s = Field<double>(node, key, where);
  if (!s.ok()) return s;
  if (!std::isfinite(*s) || *s < 0 || (positive && *s == 0) || *s > kMaxSeconds) {
    return InvalidArgument(where + ": " + key + ": must be " +
                           (positive ? "more than 0" : "0 or more") + " and at most " +
                           std::to_string(static_cast<int>(kMaxSeconds)) + " seconds");
  }
  return s;
}

// A whole number in [low, high].
Result<int> Bounded(const YAML::Node& node, const std::string& key, int low, int high,
                    const std::string& where) {
  Result<int> n = Field<int>(node, key, where);
  if (!n.ok()) return n;
  if (*n < low || *n > high) {
    return InvalidArgument(where + ": " + key + ": must be " + std::to_string(low) + ".." +
                           std::to_string(high) + ", got " + std::to_string(*n));
  }
  return n;
}

// One fault from its YAML map; `where` names it in errors.
Result<BrokerFault> ParseFault(const YAML::Node& node, int brokers, const std::string& where) {
  if (!node.IsMap()) return InvalidArgument(where + ": a fault is a map (at: ..., down: ...)");
  const std::set<std::string> known{"at",      "down",  "slow",   "errors",
                                    "request", "error", "rtt_ms", "broker"};
  for (const auto& field : node) {
    const std::string key = field.first.as<std::string>();
    if (known.count(key) == 0) return InvalidArgument(where + ": unknown field '" + key + "'");
  }
  const int kinds = static_cast<int>(node["down"].IsDefined()) +
                    static_cast<int>(node["slow"].IsDefined()) +
                    static_cast<int>(node["errors"].IsDefined());
  if (kinds != 1) {
    return InvalidArgument(where + ": needs exactly one of down, slow and errors");
  }
  if (!node["at"].IsDefined()) return InvalidArgument(where + ": at: missing");
  BrokerFault fault;
  Result<double> at = Seconds(node, "at", false, where);
  if (!at.ok()) return at.status();
  fault.at_s = *at;
  const bool errors = node["errors"].IsDefined();
  const std::vector<std::string> only_errors{"request", "error"};
  const std::vector<std::string> not_errors{"broker", "rtt_ms"};
  for (const std::string& key : errors ? not_errors : only_errors) {
    if (node[key].IsDefined()) {
      return InvalidArgument(where + ": " + key + ": not a field of " +
                             (errors ? "errors" : "down or slow"));
    }
  }
  if (errors) {
    fault.kind = BrokerFault::Kind::kErrors;
    Result<int> count = Bounded(node, "errors", 1, kMaxErrors, where);
    if (!count.ok()) return count.status();
    fault.count = *count;
    if (!node["request"].IsDefined() || !node["error"].IsDefined()) {
      return InvalidArgument(where + ": errors: needs request and error");
    }
    Result<std::string> request = Field<std::string>(node, "request", where);
    if (!request.ok()) return request.status();
    fault.request = *request;
    std::optional<int16_t> api_key = ApiKey(fault.request);
    if (!api_key) {
      return InvalidArgument(where + ": request: unknown '" + fault.request + "' (one of " +
                             BrokerFaultRequests() + ")");
    }
    fault.api_key = *api_key;
    Result<std::string> error = Field<std::string>(node, "error", where);
    if (!error.ok()) return error.status();
    fault.error = *error;
    std::optional<int> code = ErrorCode(fault.error);
    if (!code) {
      return InvalidArgument(where + ": error: '" + fault.error +
                             "' is not a broker error librdkafka names (e.g. REQUEST_TIMED_OUT)");
    }
    fault.error_code = *code;
    return fault;
  }
  const bool down = node["down"].IsDefined();
  fault.kind = down ? BrokerFault::Kind::kDown : BrokerFault::Kind::kSlow;
  Result<double> lasts = Seconds(node, down ? "down" : "slow", true, where);
  if (!lasts.ok()) return lasts.status();
  fault.for_s = *lasts;
  if (node["broker"].IsDefined()) {
    Result<int> broker = Field<int>(node, "broker", where);
    if (!broker.ok()) return broker.status();
    fault.broker = *broker;
  }
  if (fault.broker < 0 || fault.broker > brokers) {
    return InvalidArgument(where + ": broker: " + std::to_string(fault.broker) +
                           " is not one of the cluster's ids 1.." + std::to_string(brokers) +
                           " (or 0: every broker)");
  }
  if (down) {
    if (node["rtt_ms"].IsDefined()) return InvalidArgument(where + ": rtt_ms: only for slow");
    return fault;
  }
  if (!node["rtt_ms"].IsDefined()) return InvalidArgument(where + ": slow: needs rtt_ms");
  Result<int> rtt = Bounded(node, "rtt_ms", 1, kMaxRttMs, where);
  if (!rtt.ok()) return rtt.status();
  fault.rtt_ms = *rtt;
  return fault;
}

// The fault's start (`on`) or end applied to the broker.
Status Apply(EmbeddedBroker& broker, const BrokerFault& fault, bool on) {
  switch (fault.kind) {
    case BrokerFault::Kind::kDown:
      return broker.SetDown(fault.broker, on);
    case BrokerFault::Kind::kSlow:
      return broker.SetRoundTrip(fault.broker, on ? fault.rtt_ms : 0);
    case BrokerFault::Kind::kErrors:
      // Pushed errors are used up by the requests they answer: nothing to undo.
      if (on) broker.PushRequestErrors(fault.api_key, fault.error_code, fault.count);
      return Status::Ok();
  }
  return Internal("broker faults: unknown kind");
}

}  // namespace

std::string BrokerFault::Describe() const {
  switch (kind) {
    case Kind::kDown:
      return Which(broker) + " down for " + SecondsText(for_s);
    case Kind::kSlow:
      return Which(broker) + " answering " + std::to_string(rtt_ms) + " ms late for " +
             SecondsText(for_s);
    case Kind::kErrors:
      return "the next " + std::to_string(count) + " " + request + " requests answered " + error;
  }
  return "?";
}

std::string BrokerFaultRequests() {
  std::string names;
  for (const NamedRequest& r : kRequests)
    names += (names.empty() ? "" : ", ") + std::string(r.name);
  return names;
}

Result<std::vector<BrokerFault>> ParseBrokerFaults(const std::string& yaml, int brokers) {
  std::vector<BrokerFault> plan;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("broker faults: not YAML: ") + e.what());
  }
  if (root.IsNull()) return plan;
  if (!root.IsSequence()) {
    return InvalidArgument("broker faults: the plan is a list of faults (- {at: 20, down: 10})");
  }
  for (size_t i = 0; i < root.size(); ++i) {
    const std::string where = "broker faults: fault " + std::to_string(i + 1);
    try {
      Result<BrokerFault> fault = ParseFault(root[i], brokers, where);
      if (!fault.ok()) return fault.status();
      plan.push_back(*std::move(fault));
    } catch (const YAML::Exception& e) {
      return InvalidArgument(where + ": " + e.msg);
    }
  }
  std::stable_sort(plan.begin(), plan.end(),
                   [](const BrokerFault& a, const BrokerFault& b) { return a.at_s < b.at_s; });
  return plan;
}

Result<std::vector<BrokerFault>> LoadBrokerFaults(const std::string& path, int brokers) {
  std::ifstream in(path);
  if (!in) return NotFound("broker faults: cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  Result<std::vector<BrokerFault>> plan = ParseBrokerFaults(text.str(), brokers);
  if (!plan.ok()) return plan.status().WithContext(path);
  return plan;
}

Status RunBrokerFaults(EmbeddedBroker& broker, const std::vector<BrokerFault>& plan,
                       const std::function<bool()>& should_stop) {
  // Every start and end as one timeline: (seconds, fault, whether it starts).
  struct Step {
    double at_s;
    const BrokerFault* fault;
    bool on;
  };
  std::vector<Step> steps;
  for (const BrokerFault& fault : plan) {
    steps.push_back({fault.at_s, &fault, true});
    if (fault.kind != BrokerFault::Kind::kErrors)
      steps.push_back({fault.at_s + fault.for_s, &fault, false});
  }
  std::stable_sort(steps.begin(), steps.end(),
                   [](const Step& a, const Step& b) { return a.at_s < b.at_s; });
  const auto start = std::chrono::steady_clock::now();
  std::vector<const BrokerFault*> on;  // started, not ended
  Status status = Status::Ok();
  for (const Step& step : steps) {
    const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(step.at_s));
    bool stopped = should_stop();
    while (!stopped && std::chrono::steady_clock::now() < due) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          due - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
      stopped = should_stop();
    }
    if (stopped) break;
    status = Apply(broker, *step.fault, step.on);
    if (!status.ok()) break;
    spdlog::warn("broker faults: at {:.1f} s, {} {}", step.at_s,
                 step.on ? "starting:" : "over:", step.fault->Describe());
    if (step.fault->kind == BrokerFault::Kind::kErrors) continue;
    if (step.on) {
      on.push_back(step.fault);
    } else {
      on.erase(std::find(on.begin(), on.end(), step.fault));
    }
  }
  for (const BrokerFault* fault : on) {  // stopped early: leave the broker well
    Status undone = Apply(broker, *fault, false);
    if (status.ok()) status = undone;
  }
  return status;
}

}  // namespace clickdiff
