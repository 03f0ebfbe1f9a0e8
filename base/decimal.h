// base/decimal.h — numbers stored as decimal text (offsets, version and sequence numbers, the
// digits of zero-padded keys), read back whole.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>

namespace clickdiff {

// The integer `text` spells in decimal, all of it (no sign for unsigned T, no spaces, nothing
// after the digits); nullopt for anything else, the empty string included.
template <typename T>
std::optional<T> ParseDecimal(std::string_view text) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace clickdiff
