// Device selection: which devices the service's sampler shards spread over. Pure, so the GPU cases
// are checked on any machine.
#include "model/runtime.h"

#include <gtest/gtest.h>

namespace clickdiff {
namespace {

std::vector<std::string> Names(const std::vector<torch::Device>& devices) {
  std::vector<std::string> names;
  for (const torch::Device& d : devices) names.push_back(d.str());
  return names;
}

TEST(ServingDevicesTest, EveryGpuWhenCudaIsAskedForAndOnlyThePinnedOneOtherwise) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Names(ServingDevices("cpu", torch::kCPU, 4)), V{"cpu"});
  EXPECT_EQ(Names(ServingDevices("auto", torch::kCPU, 0)), V{"cpu"});
  const torch::Device gpu0(torch::kCUDA, 0);
  EXPECT_EQ(Names(ServingDevices("cuda", gpu0, 1)), V{"cuda:0"});
  EXPECT_EQ(Names(ServingDevices("cuda", gpu0, 4)), (V{"cuda:0", "cuda:1", "cuda:2", "cuda:3"}));
  EXPECT_EQ(Names(ServingDevices("auto", gpu0, 2)), (V{"cuda:0", "cuda:1"}));
  EXPECT_EQ(Names(ServingDevices("cuda:2", torch::Device(torch::kCUDA, 2), 4)), V{"cuda:2"});
  // A CUDA device without an index is the first GPU, listed once.
  EXPECT_EQ(Names(ServingDevices("cuda", torch::Device(torch::kCUDA), 2)).size(), 2u);
}

TEST(ResolveDeviceTest, CpuAndBadSpecs) {
  EXPECT_EQ(ResolveDevice("cpu").value(), torch::Device(torch::kCPU));
  EXPECT_EQ(ResolveDevice("gpu").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveDevice("cuda:x").status().code(), StatusCode::kInvalidArgument);
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(ResolveDevice("auto").value(), torch::Device(torch::kCPU));
    EXPECT_EQ(ResolveDevice("cuda").status().code(), StatusCode::kUnavailable);
  }
}

}  // namespace
}  // namespace clickdiff
