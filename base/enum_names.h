// base/enum_names.h — one table of names per enum, so that parsing, printing and error messages
// of a configuration choice share one spelling. Tables are constexpr arrays; the functions are
// pure and thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace clickdiff {

template <typename E>
struct EnumName {
  const char* name;
  E value;
};

// The name of `value` in `names` ("" when the table lacks it).
template <typename E, size_t N>
constexpr const char* NameOf(const std::array<EnumName<E>, N>& names, E value) {
  for (const EnumName<E>& n : names) {
    if (n.value == value) return n.name;
  }
  return "";
}

// The value named `name`, if the table has it.
template <typename E, size_t N>
std::optional<E> ValueOf(const std::array<EnumName<E>, N>& names, std::string_view name) {
  for (const EnumName<E>& n : names) {
    if (std::string_view(n.name) == name) return n.value;
  }
  return std::nullopt;
}

// "one of 'a', 'b', 'c'", for error messages and help texts.
template <typename E, size_t N>
std::string OneOf(const std::array<EnumName<E>, N>& names) {
  std::string text = "one of";
  for (size_t i = 0; i < N; ++i) {
    text += (i == 0 ? " '" : ", '") + std::string(names[i].name) + "'";
  }
  return text;
}

}  // namespace clickdiff
