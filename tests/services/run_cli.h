// tests/services/run_cli.h — runs the clickdiff CLI in-process and captures what it prints.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "services/cli.h"

namespace clickdiff::testutil {

struct CliRun {
  int code = 0;
  std::string out;
  std::string err;
};

// Runs `clickdiff <args...>`.
inline CliRun RunClickdiff(std::vector<std::string> args) {
  args.insert(args.begin(), "clickdiff");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  std::ostringstream err;
  int code = RunCli(static_cast<int>(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

}  // namespace clickdiff::testutil
