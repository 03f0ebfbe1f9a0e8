// io/curve_key.h — CURVE keys in ZeroMQ's Z85 text form (40 characters for 32 bytes), shared by
// ZmqServer and the ZeroMQ clients so both validate keys the same way.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace clickdiff {

using CurveKey = std::array<uint8_t, 32>;

// Decodes a Z85 key of exactly 40 characters. A wrong length or a character outside Z85 gives
// InvalidArgument naming `name` (e.g. "zmq.curve.server_secret_key"); the key itself is never put
// in the message because it may be a secret.
Result<CurveKey> DecodeCurveKey(const std::string& z85, const std::string& name);

}  // namespace clickdiff
