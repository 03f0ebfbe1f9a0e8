// services/logging.h — the one log format of every clickdiff program (spdlog, to stderr).
#pragma once

#include <string>

#include "base/status.h"

namespace clickdiff {

// Installs the default logger: "2026-11-22T03:57:04.123Z info [clickdiff] message" on stderr,
// at `level` (trace | debug | info | warn | error | off). Call once at program start; later calls
// only change the level. Errors: kInvalidArgument naming an unknown level.
Status InitLogging(const std::string& level);

}  // namespace clickdiff
