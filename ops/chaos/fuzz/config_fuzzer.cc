// Fuzz target: YAML configuration text (config/config_loader.h), what `--config FILE` reads:
// malformed YAML, wrong types, out-of-range values, unknown keys, deep nesting and anchors must
// give an error naming the key, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)clickdiff::LoadConfigString(text, "fuzz.yaml");
  return 0;
}
