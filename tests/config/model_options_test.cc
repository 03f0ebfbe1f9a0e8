// What clickdiffd samples with: the shard count and the devices behind it, from the Config.
#include "config/model_options.h"

#include <gtest/gtest.h>

namespace clickdiff {
namespace {

TEST(PlanServingTest, OneShardPerDeviceByDefaultAndExplicitCountsKept) {
  Config config;
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

  // A GPU this machine lacks is named with the key.
  config.compute.device = model::ParseDevice("cuda:7").value();
  config.sampler.shards = 0;
  if (torch::cuda::device_count() < 8) {
    EXPECT_NE(PlanServing(config).status().ToString().find("compute.device"), std::string::npos);
  }
}

TEST(ModelOptionsTest, ALoadedModelDrawingItsClicksOtherwiseIsNamedInAWarning) {
  Config config;  // geodesic
  model::SegmenterOptions loaded = *SegmenterOptionsFrom(config);
  EXPECT_EQ(ClickGuidanceWarning(config, loaded, "new.pt"), "");
  loaded.click_guidance = model::ClickGuidanceKind::kGaussian;  // a file from before geodesic
  const std::string warning = ClickGuidanceWarning(config, loaded, "old.pt");
  EXPECT_NE(warning.find("old.pt draws its clicks as gaussian"), std::string::npos) << warning;
  EXPECT_NE(warning.find("model.click_guidance geodesic"), std::string::npos) << warning;
  loaded.click_input = false;  // takes no clicks: nothing to say
  EXPECT_EQ(ClickGuidanceWarning(config, loaded, "old.pt"), "");
}

TEST(ModelOptionsTest, ALoadedModelPlacingItsImagesOtherwiseIsNamedBesideItsClicks) {
  Config config;
  config.model.crop_to_content = false;  // a model file from before the crop
  model::SegmenterOptions loaded = *SegmenterOptionsFrom(config);
  EXPECT_EQ(ModelFileWarnings(config, loaded, "m.pt"), "");
  config.model.crop_to_content = true;
  std::string warning = ModelFileWarnings(config, loaded, "m.pt");
  EXPECT_NE(warning.find("m.pt does not crop images to their content"), std::string::npos)
      << warning;
  loaded.click_guidance = model::ClickGuidanceKind::kGaussian;
  warning = ModelFileWarnings(config, loaded, "m.pt");
  EXPECT_NE(warning.find("draws its clicks as gaussian"), std::string::npos) << warning;
  EXPECT_NE(warning.find("; m.pt does not crop"), std::string::npos) << warning;
}

TEST(ModelOptionsTest, ModelSectionsBecomeTheModelLibrarysOptions) {
  Config config;
  config.model.method = model::Method::kGaussianX0;
  config.model.resolution = 32;
  config.model.gaussian.latent_dim = 12;
  config.trainer.seed = 9;
  config.model.augment.rotations = true;
  config.model.augment.intensity = 0.2;
  config.model.d3pm.prior_share = 0.3;
  config.model.loss.dense_weight = 0.02;
  config.model.click_guidance = model::ClickGuidanceKind::kGaussian;
  Result<model::SegmenterOptions> o = SegmenterOptionsFrom(config);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->method, model::Method::kGaussianX0);
  EXPECT_EQ(o->resolution, 32);
  EXPECT_EQ(o->gaussian.latent_dim, 12);
  EXPECT_EQ(o->seed, 9u);
  EXPECT_TRUE(o->augment.rotations);
  EXPECT_EQ(o->d3pm.beta_end, 0.05);  // the product's schedule, not the library's 0.02
  EXPECT_EQ(SegmenterOptionsFrom(Config{})->loss.dense_weight, 0.001);  // the library's is 1
  EXPECT_EQ(o->d3pm.prior_share, 0.3);
  EXPECT_EQ(o->loss.dense_weight, 0.02);
  EXPECT_EQ(o->click_guidance, model::ClickGuidanceKind::kGaussian);
  EXPECT_EQ(SegmenterOptionsFrom(Config{})->click_guidance, model::ClickGuidanceKind::kGeodesic);
  EXPECT_DOUBLE_EQ(o->augment.intensity, 0.2);
  EXPECT_EQ(TrainerOptionsFrom(config.trainer).seed, 9u);
  EXPECT_EQ(o->unet.image_channels, 3);  // color auto: the service cannot see its images first
  config.model.color = model::ColorMode::kGray;
  EXPECT_EQ(SegmenterOptionsFrom(config)->unet.image_channels, 1);
  // A loaded model decides; an explicit model.color that disagrees is an error naming both.
  model::SegmenterOptions rgb_model = *o;
  EXPECT_TRUE(CheckModelColor(config, *SegmenterOptionsFrom(config), "gray.pt").ok());
  Status mismatch = CheckModelColor(config, rgb_model, "rgb.pt");
  EXPECT_NE(mismatch.message().find("rgb.pt takes RGB images but model.color is gray"),
            std::string::npos)
      << mismatch.ToString();
  config.model.color = model::ColorMode::kAuto;
  EXPECT_TRUE(CheckModelColor(config, rgb_model, "rgb.pt").ok());

  config.model.resolution = 30;  // the U-Net needs a multiple of 2^(levels-1)
  EXPECT_NE(SegmenterOptionsFrom(config).status().ToString().find("model"), std::string::npos);

  config.aggregator.rule = model::AggregationRule::kThreshold;
  config.aggregator.threshold = 0.3;
  model::AggregatorOptions a = AggregatorOptionsFrom(config.aggregator, 4);
  EXPECT_EQ(a.rule, model::AggregationRule::kThreshold);
  EXPECT_EQ(a.num_classes, 4);
  EXPECT_DOUBLE_EQ(a.threshold, 0.3);

  config.aggregator.rule = model::AggregationRule::kOtsu;
  config.aggregator.otsu_floor = 0.1;
  config.aggregator.click_reach = 1.5;
  config.aggregator.edge_band = 2.5;
  a = AggregatorOptionsFrom(config.aggregator, 2);
  EXPECT_EQ(a.rule, model::AggregationRule::kOtsu);
  EXPECT_DOUBLE_EQ(a.otsu_floor, 0.1);
  EXPECT_DOUBLE_EQ(a.click_reach, 1.5);
  EXPECT_DOUBLE_EQ(a.edge_band, 2.5);
}

}  // namespace
}  // namespace clickdiff
