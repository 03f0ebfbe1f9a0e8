#include "io/curve_key.h"

#include <zmq.h>

namespace clickdiff {

Result<CurveKey> DecodeCurveKey(const std::string& z85, const std::string& name) {
  constexpr size_t kZ85Chars = 40;
  if (z85.size() != kZ85Chars) {
    return InvalidArgument(name + ": a CURVE key is 40 Z85 characters, got " +
                           std::to_string(z85.size()));
  }
  CurveKey key{};
  // zmq_z85_decode rejects characters outside the Z85 alphabet (returns null, errno EINVAL).
  if (zmq_z85_decode(key.data(), z85.c_str()) == nullptr) {
    return InvalidArgument(name + ": not a valid Z85 CURVE key (character outside Z85)");
  }
  return key;
}

}  // namespace clickdiff
