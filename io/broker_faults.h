// io/broker_faults.h — faults the embedded broker shows on a schedule, for the chaos suite
// (`clickdiff broker --faults PLAN`, ops/chaos/faults.sh): brokers that go down and come back,
// requests answered with Kafka errors, slow brokers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/embedded_broker.h"

namespace clickdiff {

struct BrokerFault {
  enum class Kind {
    kDown,    // the broker drops its connections and refuses new ones, then comes back
    kErrors,  // the next `count` requests of one kind are answered with `error`
    kSlow,    // each request takes `rtt_ms` longer, then normal again
  };
  Kind kind = Kind::kDown;
  double at_s = 0;      // seconds after the plan starts
  double for_s = 0;     // kDown, kSlow: how long it lasts
  int broker = 0;       // kDown, kSlow: the broker's id, 1..N; 0: every broker
  std::string request;  // kErrors: the request's name (produce, fetch, heartbeat, ...)
  int16_t api_key = 0;  // kErrors: that request's Kafka protocol API key
  std::string error;    // kErrors: the error's name (librdkafka's, e.g. REQUEST_TIMED_OUT)
  int error_code = 0;   // kErrors: its code (rd_kafka_resp_err_t)
  int count = 0;        // kErrors: how many requests get it
  int rtt_ms = 0;       // kSlow

  std::string Describe() const;  // one line for the log: "every broker down for 10 s"
};

// The names `request:` takes, e.g. for help texts: "produce, fetch, ...".
std::string BrokerFaultRequests();

// A plan: a YAML sequence of faults, each a map with `at` (seconds after the start, >= 0) and one
// of
//   down: SECONDS               [broker: ID]  the broker (default every one) down that long
//   slow: SECONDS, rtt_ms: MS   [broker: ID]  requests MS slower for that long
//   errors: N, request: NAME, error: NAME     the next N requests of that kind get that error
// e.g. `- {at: 20, down: 10}`. Faults may overlap, but not two of one kind on one broker (the
// first to end ends both). The plan is returned in order of `at`. Errors:
// kInvalidArgument naming the fault (by its place in the list) and the field: not YAML, an unknown
// or missing field, a negative time, a broker id outside 1..`brokers`, an unknown request or error
// name (librdkafka's broker error names; local errors, starting with '_', are not ones a broker
// sends).
Result<std::vector<BrokerFault>> ParseBrokerFaults(const std::string& yaml, int brokers);
// The same from a file (kNotFound when it cannot be read).
Result<std::vector<BrokerFault>> LoadBrokerFaults(const std::string& path, int brokers);

// Applies `plan` to `broker` at its times (counted from the call), logging each fault as it starts
// and ends; returns when every fault is over, or early, with every fault on undone, once
// `should_stop()` holds (polled every 100 ms). The broker must have the plan's brokers.
Status RunBrokerFaults(EmbeddedBroker& broker, const std::vector<BrokerFault>& plan,
                       const std::function<bool()>& should_stop);

}  // namespace clickdiff
