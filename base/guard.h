// base/guard.h — the one place where an exception becomes a Status.
//
// Threads and flow-graph bodies must never let an exception escape (it would terminate the
// program or cancel the whole graph). They run their work through Guarded, which returns what the
// work returns, or kInternal naming `what` and the exception. Stateless; safe from any thread.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "base/status.h"

namespace clickdiff {

// Runs `work` (returning a Status or a Result<T>) and returns its result; an exception thrown by
// it comes back as kInternal "<what>: <exception message>".
template <typename F>
auto Guarded(std::string_view what, F&& work) -> decltype(work()) {
  try {
    return work();
  } catch (const std::exception& e) {
    return Internal(std::string(what) + ": " + e.what());
  } catch (...) {
    return Internal(std::string(what) + ": an exception that is not a std::exception");
  }
}

}  // namespace clickdiff
