// Fuzz target: clicks JSON Lines (io/dataset_files.h ParseClicks), what `clickdiff train --clicks`
// and `produce --clicks` read: malformed JSON, missing or mistyped fields, huge numbers and
// unknown keys must give an error naming the line.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "io/dataset_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (bool allow_unknown_fields : {false, true}) {
    clickdiff::ClickFileOptions options;
    options.num_classes = 4;
    options.allow_unknown_fields = allow_unknown_fields;
    std::istringstream in(text);
    (void)clickdiff::ParseClicks(in, "fuzz.jsonl", options);
  }
  return 0;
}
