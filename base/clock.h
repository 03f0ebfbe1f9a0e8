// base/clock.h — wall-clock time as the records and events carry it.
#pragma once

#include <cstdint>

namespace clickdiff {

// Milliseconds since the Unix epoch (system clock). Thread-safe.
int64_t NowMs();

}  // namespace clickdiff
