// services/cli.h — the `clickdiff` command line (CLI11): offline tools, config checks, info.
//
// Each subcommand lives in its own services/*_command.cc and is registered here. RunCli writes
// results to `out` and errors to `err` (so tests can capture them) and returns the process exit
// code: 0 success, 1 a failed command (bad input, failed check), 2 a usage error.
#pragma once

#include <ostream>

namespace clickdiff {

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace clickdiff
