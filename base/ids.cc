#include "base/ids.h"

#include <cstdio>

namespace clickdiff {
namespace {

bool Allowed(unsigned char c) {
  if (c >= 0x80) return true;  // UTF-8 sequences (protobuf checks they are well formed)
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view(" ._-+=@#,:~()[]").find(static_cast<char>(c)) != std::string_view::npos;
}

}  // namespace

std::string IdProblem(std::string_view field, std::string_view id, size_t max_bytes) {
  const std::string name(field);
  if (id.empty()) return name + ": empty (required)";
  if (id.size() > max_bytes) {
    return name + ": " + std::to_string(id.size()) + " bytes, more than the limit of " +
           std::to_string(max_bytes);
  }
  if (id == "." || id == "..") return name + ": \"" + std::string(id) + "\" is not a valid id";
  for (unsigned char c : id) {
    if (Allowed(c)) continue;
    char shown[8];
    std::snprintf(shown, sizeof shown, "0x%02x", c);
    return name + ": contains " +
           (c >= 0x20 && c < 0x7f ? "'" + std::string(1, static_cast<char>(c)) + "'"
                                  : std::string(shown)) +
           " (ids hold letters, digits, space and . _ - + = @ # , : ~ ( ) [ ])";
  }
  return "";
}

}  // namespace clickdiff
