// Device selection: which devices the service's sampler shards spread over. Pure, so the GPU cases
// are checked on any machine.
#include "model/runtime.h"

#include <gtest/gtest.h>

#include "model/choices.h"

namespace clickdiff::model {
namespace {

DeviceSpec Spec(const std::string& name) { return ParseDevice(name).value(); }

std::vector<std::string> Names(const std::vector<torch::Device>& devices) {
  std::vector<std::string> names;
  for (const torch::Device& d : devices) names.push_back(d.str());
  return names;
}

TEST(ServingDevicesTest, EveryGpuWhenCudaIsAskedForAndOnlyThePinnedOneOtherwise) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Names(ServingDevices(Spec("cpu"), torch::kCPU, 4)), V{"cpu"});
  EXPECT_EQ(Names(ServingDevices(Spec("auto"), torch::kCPU, 0)), V{"cpu"});
  const torch::Device gpu0(torch::kCUDA, 0);
  EXPECT_EQ(Names(ServingDevices(Spec("cuda"), gpu0, 1)), V{"cuda:0"});
  EXPECT_EQ(Names(ServingDevices(Spec("cuda"), gpu0, 4)),
            (V{"cuda:0", "cuda:1", "cuda:2", "cuda:3"}));
  EXPECT_EQ(Names(ServingDevices(Spec("auto"), gpu0, 2)), (V{"cuda:0", "cuda:1"}));
  EXPECT_EQ(Names(ServingDevices(Spec("cuda:2"), torch::Device(torch::kCUDA, 2), 4)), V{"cuda:2"});
  // A CUDA device without an index is the first GPU, listed once.
  EXPECT_EQ(Names(ServingDevices(Spec("cuda"), torch::Device(torch::kCUDA), 2)).size(), 2u);
}

TEST(ResolveDeviceTest, CpuAndBadSpecs) {
  EXPECT_EQ(ResolveDevice(Spec("cpu")).value(), torch::Device(torch::kCPU));
  EXPECT_EQ(ParseDevice("gpu").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDevice("cuda:x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDevice("cuda:").status().code(), StatusCode::kInvalidArgument);
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(ResolveDevice(Spec("auto")).value(), torch::Device(torch::kCPU));
    EXPECT_EQ(ResolveDevice(Spec("cuda")).status().code(), StatusCode::kUnavailable);
  }
}

TEST(DeviceSpecTest, NamesRoundTrip) {
  for (const char* name : {"cpu", "cuda", "cuda:0", "cuda:3", "auto"}) {
    EXPECT_EQ(DeviceName(Spec(name)), name);
  }
  EXPECT_EQ(Spec("cuda:3").index, 3);
  EXPECT_EQ(Spec("cuda").index, -1);
}

TEST(ChoicesTest, MethodAndRuleNamesRoundTripAndUnknownOnesNameTheAlternatives) {
  for (const auto& m : kMethodNames) EXPECT_EQ(ParseMethod(m.name).value(), m.value);
  for (const auto& r : kAggregationRuleNames) {
    EXPECT_EQ(ParseAggregationRule(r.name).value(), r.value);
  }
  Status bad = ParseMethod("ddpm").status();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("'gaussian_x0'"), std::string::npos) << bad.message();
}

}  // namespace
}  // namespace clickdiff::model
