// What clickdiffd samples with: the shard count and the devices behind it, from the Config.
#include "services/model_options.h"

#include <gtest/gtest.h>

namespace clickdiff {
namespace {

TEST(PlanServingTest, OneShardPerDeviceByDefaultAndExplicitCountsKept) {
  Config config;
  config.compute.device = "cpu";
  Result<ServingPlan> plan = PlanServing(config);  // sampler.shards 0
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan->shards, 1);
  ASSERT_EQ(plan->devices.size(), 1u);
  EXPECT_EQ(plan->devices[0], torch::Device(torch::kCPU));

  config.sampler.shards = 3;  // three threads, all on the one device
  plan = PlanServing(config);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->shards, 3);
  EXPECT_EQ(plan->devices.size(), 1u);

  config.compute.device = "tpu";
  EXPECT_NE(PlanServing(config).status().ToString().find("compute.device"), std::string::npos);
}

}  // namespace
}  // namespace clickdiff
