#include "services/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace clickdiff {

Status InitLogging(const std::string& level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(level);
  // from_str maps anything it does not know to "off": tell that apart from a real "off".
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgument("log level '" + level +
                           "': expected trace, debug, info, warn, error or off");
  }
  static const bool installed = [] {
    auto logger = spdlog::stderr_color_mt("clickdiff");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)installed;
  spdlog::set_level(parsed);
  return Status::Ok();
}

}  // namespace clickdiff
