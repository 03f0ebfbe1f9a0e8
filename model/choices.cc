#include "model/choices.h"

#include <algorithm>
#include <cctype>

namespace clickdiff::model {

const char* MethodName(Method method) { return NameOf(kMethodNames, method); }

Result<Method> ParseMethod(const std::string& name) {
  if (std::optional<Method> m = ValueOf(kMethodNames, name)) return *m;
  return InvalidArgument("unknown method '" + name + "' (expected " + OneOf(kMethodNames) + ")");
}

const char* AggregationRuleName(AggregationRule rule) {
  return NameOf(kAggregationRuleNames, rule);
}

Result<AggregationRule> ParseAggregationRule(const std::string& name) {
  if (std::optional<AggregationRule> r = ValueOf(kAggregationRuleNames, name)) return *r;
  return InvalidArgument("unknown aggregation rule '" + name + "' (expected " +
                         OneOf(kAggregationRuleNames) + ")");
}

const char* LossKindName(LossKind kind) { return NameOf(kLossKindNames, kind); }

Result<LossKind> ParseLossKind(const std::string& name) {
  if (std::optional<LossKind> k = ValueOf(kLossKindNames, name)) return *k;
  return InvalidArgument("unknown loss '" + name + "' (expected " + OneOf(kLossKindNames) + ")");
}

const char* ClickGuidanceName(ClickGuidanceKind kind) { return NameOf(kClickGuidanceNames, kind); }

Result<ClickGuidanceKind> ParseClickGuidance(const std::string& name) {
  if (std::optional<ClickGuidanceKind> k = ValueOf(kClickGuidanceNames, name)) return *k;
  return InvalidArgument("unknown click guidance '" + name + "' (expected " +
                         OneOf(kClickGuidanceNames) + ")");
}

std::string DeviceName(const DeviceSpec& device) {
  switch (device.kind) {
    case DeviceSpec::Kind::kCpu:
      return "cpu";
    case DeviceSpec::Kind::kAuto:
      return "auto";
    case DeviceSpec::Kind::kCuda:
      return device.index < 0 ? "cuda" : "cuda:" + std::to_string(device.index);
  }
  return "cpu";
}

Result<DeviceSpec> ParseDevice(const std::string& name) {
  if (name == "cpu") return DeviceSpec{DeviceSpec::Kind::kCpu, -1};
  if (name == "auto") return DeviceSpec{DeviceSpec::Kind::kAuto, -1};
  if (name == "cuda") return DeviceSpec{DeviceSpec::Kind::kCuda, -1};
  const std::string digits = name.rfind("cuda:", 0) == 0 ? name.substr(5) : "";
  if (!digits.empty() && digits.size() <= 4 &&
      std::all_of(digits.begin(), digits.end(), [](char c) { return std::isdigit(c) != 0; })) {
    return DeviceSpec{DeviceSpec::Kind::kCuda, std::stoi(digits)};
  }
  return InvalidArgument("'" + name + "' is not a device (expected cpu, cuda, cuda:N or auto)");
}

}  // namespace clickdiff::model
