#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "config/model_options.h"
#include "io/image_codec.h"
#include "io/keys.h"
#include "nodes/aggregate.h"
#include "nodes/intake.h"
#include "nodes/sampler.h"
#include "tests/nodes/node_test_util.h"

namespace clickdiff {
namespace {

// A tiny model and a real store; the sampler reads the image and its clicks from the store.
class SamplerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = testutil::OpenFreshStore("sampler", &dir_);
    Config config = testutil::TinyModelConfig();
    auto serving = std::make_shared<ServingModel>();
    serving->segmenter = std::make_shared<model::Segmenter>(
        model::Segmenter::Create(SegmenterOptionsFrom(config).value(), torch::kCPU).value());
    serving->version = 3;
    models_.Set(serving);
    cache_ = std::make_unique<MaskCache>(store_.get());
    sampler_ = std::make_unique<Sampler>(store_.get(), &models_, &gate_, cache_.get(),
                                         testutil::SamplerSettings(3, 2, 64));
  }
  void TearDown() override {
    sampler_.reset();
    cache_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void StoreImage(const std::string& id, int resolution = 16) {
    v1::StoredImage image =
        testutil::StoredImageOnGrid(id, resolution, [](int, int) { return 0.5f; });
    image.mutable_event()->set_payload("the image's bytes");
    Store::Batch batch;
    batch.Put(Family::kImages, keys::Image("ds", id), image.SerializeAsString());
    ASSERT_TRUE(store_->Write(batch).ok());
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  ModelSlot models_;
  InferRequestGate gate_;
  std::unique_ptr<MaskCache> cache_;
  std::unique_ptr<Sampler> sampler_;
};

TEST_F(SamplerTest, DrawsNSamplesTaggedWithVersionAndClickRevisionThatHoldTheClicks) {
  StoreImage("a");
  v1::ClickEvent event;
  event.set_x(3);
  event.set_y(4);
  event.set_class_id(1);
  event.set_positive(true);
  Store::Batch click;
  click.Put(Family::kClicks, keys::Child(keys::Image("ds", "a"), "c1"), event.SerializeAsString());
  click.Put(Family::kClicks, keys::Child(keys::Image("ds", "a"), "c2"), "corrupt");
  ASSERT_TRUE(store_->Write(click).ok());
  ASSERT_TRUE(gate_(RequestFor("ds", "a")));
  Result<SampleSet> set = (*sampler_)(RequestFor("ds", "a"));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->samples.sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_EQ(set->model_version, 3u);
  EXPECT_EQ(set->click_revision, 2u);  // the corrupt click counts, but is not drawn
  ASSERT_EQ(set->clicks.size(), 1u);
  EXPECT_EQ(set->clicks[0].x, 3);
  // (3, 4) of the 32x24 image is grid cell (1, 4) of 16x16 (padded to 32x32, 4 rows on top).
  EXPECT_TRUE(set->samples.select(2, 1).select(1, 4).eq(1).all().item<bool>());
  EXPECT_FALSE(set->cached.has_value());
  EXPECT_EQ(set->image.payload(), "the image's bytes");  // kept: the aggregator snaps to them
  EXPECT_EQ(gate_.waiting(), 0u);  // starting the work lets the next request for "a" through
}

TEST_F(SamplerTest, ShardsAreIndependentDrawsOfTheSameModelThatTogetherMakeN) {
  EXPECT_EQ(Sampler::ShardSamples(8, 0, 3), 3);
  EXPECT_EQ(Sampler::ShardSamples(8, 1, 3), 3);
  EXPECT_EQ(Sampler::ShardSamples(8, 2, 3), 2);
  StoreImage("a");
  Sampler sampler(store_.get(), &models_, &gate_, cache_.get(),
                  testutil::SamplerSettings(12, 2, 64));
  Result<PreparedRequest> prepared = sampler.Prepare(RequestFor("ds", "a"));
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  EXPECT_EQ(prepared->set.model_version, 3u);
  // A new version in the slot does not change what a started request draws with.
  auto newer = std::make_shared<ServingModel>(*models_.Get());
  newer->version = 4;
  models_.Set(newer);
  EXPECT_EQ(prepared->model->version, 3u);

  std::vector<torch::Tensor> shards;
  for (int64_t k = 0; k < 3; ++k) {
    Result<torch::Tensor> drawn = sampler.Draw(*prepared, k, 3);
    ASSERT_TRUE(drawn.ok()) << drawn.status().ToString();
    EXPECT_EQ(drawn->sizes(), (std::vector<int64_t>{4, 16, 16}));
    shards.push_back(*drawn);
  }
  EXPECT_FALSE(torch::equal(shards[0], shards[1]));  // seeds of their own
  Result<torch::Tensor> whole = sampler.Draw(*prepared, 0, 1);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->size(0), 12);
  // The three shards together, like the unsharded draw, are 12 samples of the same model: their
  // foreground shares agree within sampling noise.
  const double sharded = (torch::cat(shards) > 0).to(torch::kDouble).mean().item<double>();
  const double unsharded = (*whole > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(sharded, unsharded, 0.15);
}

// One shard per serving device: shard k draws with the version's copy on device k (in turn).
TEST_F(SamplerTest, ShardsDrawWithTheCopyOfTheirDevice) {
  StoreImage("a");
  Sampler sampler(store_.get(), &models_, &gate_, cache_.get(),
                  testutil::SamplerSettings(4, 2, 64));
  Result<PreparedRequest> prepared = sampler.Prepare(RequestFor("ds", "a"));
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  // Two different networks stand in for the copies (real copies share their weights).
  Config config = testutil::TinyModelConfig();
  config.trainer.seed = 99;  // another initialisation
  auto other = std::make_shared<model::Segmenter>(
      model::Segmenter::Create(SegmenterOptionsFrom(config).value(), torch::kCPU).value());
  auto pinned = [&](std::shared_ptr<const model::Segmenter> first,
                    std::shared_ptr<const model::Segmenter> second) {
    auto model = std::make_shared<ServingModel>(*prepared->model);
    model->segmenter = std::move(first);
    model->replicas = {std::move(second)};
    PreparedRequest request = *prepared;
    request.model = model;
    return request;
  };
  const std::shared_ptr<const model::Segmenter> own = prepared->model->segmenter;
  const PreparedRequest spread = pinned(own, other);
  auto draw = [&](const PreparedRequest& request, int64_t shard) {
    return sampler.Draw(request, shard, 3).value();
  };
  EXPECT_TRUE(torch::equal(draw(spread, 0), draw(pinned(own, own), 0)));
  EXPECT_TRUE(torch::equal(draw(spread, 1), draw(pinned(other, other), 1)));
  EXPECT_FALSE(torch::equal(draw(spread, 1), draw(pinned(own, own), 1)));
  EXPECT_TRUE(torch::equal(draw(spread, 2), draw(pinned(own, own), 2)));
}

TEST_F(SamplerTest, APreviewDrawsItsOwnFewSamplesUnlessTheFinalMaskIsCached) {
  StoreImage("a");
  SamplerConfig settings = testutil::SamplerSettings(6, 3, 64);
  settings.preview_samples = 2;
  settings.preview_steps = 1;
  Sampler sampler(store_.get(), &models_, &gate_, cache_.get(), settings);
  Result<PreparedRequest> preview = sampler.Prepare(PreviewFor("ds", "a"));
  ASSERT_TRUE(preview.ok()) << preview.status().ToString();
  EXPECT_TRUE(preview->set.preview);
  EXPECT_EQ(preview->samples, 2);
  EXPECT_EQ(preview->steps, 1);
  EXPECT_EQ(preview->set.steps, 1u);
  Result<PreparedRequest> final_mask = sampler.Prepare(RequestFor("ds", "a"));
  ASSERT_TRUE(final_mask.ok());
  EXPECT_FALSE(final_mask->set.preview);
  EXPECT_EQ(final_mask->samples, 6);
  EXPECT_NE(preview->seed, final_mask->seed);  // not the final mask's first samples
  // Split over more shards than it has samples, a preview's last shard draws none.
  EXPECT_EQ(sampler.Draw(*preview, 0, 3).value().size(0), 1);
  EXPECT_EQ(sampler.Draw(*preview, 2, 3).value().sizes(), (std::vector<int64_t>{0, 16, 16}));
  // Aggregated, it is published as a preview with its N and steps.
  SampleSet set = preview->set;
  set.samples = sampler.Draw(*preview, 0, 1).value();
  model::AggregatorOptions options;
  options.num_classes = 2;
  options.rule = model::AggregationRule::kMajority;
  const Aggregate aggregate(model::Aggregator::Create(options).value());
  v1::MaskResult mask = aggregate(set).value();
  EXPECT_TRUE(mask.preview());
  EXPECT_EQ(mask.samples(), 2u);
  EXPECT_EQ(mask.steps(), 1u);

  // Once the final mask of this version and revision is cached, a preview is that mask.
  v1::MaskResult cached;
  cached.set_dataset("ds");
  cached.set_image_id("a");
  cached.set_model_version(3);
  ASSERT_TRUE((*cache_)(cached).ok());
  Result<PreparedRequest> late = sampler.Prepare(PreviewFor("ds", "a"));
  ASSERT_TRUE(late.ok());
  ASSERT_TRUE(late->set.cached.has_value());
  EXPECT_FALSE(late->set.cached->preview());
}

TEST_F(SamplerTest, UnchangedImageIsServedFromTheCache) {
  StoreImage("a");
  v1::MaskResult cached;
  cached.set_dataset("ds");
  cached.set_image_id("a");
  cached.set_model_version(3);
  cached.set_click_revision(0);
  ASSERT_TRUE((*cache_)(cached).ok());
  Result<SampleSet> set = (*sampler_)(RequestFor("ds", "a"));
  ASSERT_TRUE(set.ok());
  ASSERT_TRUE(set->cached.has_value());
  EXPECT_FALSE(set->samples.defined());
}

TEST_F(SamplerTest, MissingImageAndWrongGridAreErrors) {
  EXPECT_EQ((*sampler_)(RequestFor("ds", "nope")).status().code(), StatusCode::kNotFound);
  StoreImage("b", 8);
  EXPECT_EQ((*sampler_)(RequestFor("ds", "b")).status().code(), StatusCode::kFailedPrecondition);
}

TEST(AggregateTest, MajorityOfSamplesBecomesAMaskAtTheImageSize) {
  model::AggregatorOptions options;
  options.num_classes = 2;
  options.rule = model::AggregationRule::kMajority;
  Aggregate aggregate(model::Aggregator::Create(options).value());
  SampleSet set;
  set.request = RequestFor("ds", "a");
  set.image.set_dataset("ds");
  set.image.set_image_id("a");
  set.image.set_width(32);
  set.image.set_height(16);  // on a 16-cell grid: 2 px per cell, rows 4..11 of the grid hold it
  set.mapping = model::MakeGridMapping(32, 16, 16).value();
  set.samples = torch::zeros({4, 16, 16}, torch::kInt64);
  set.samples.index_put_(
      {torch::indexing::Slice(), torch::indexing::Slice(6, 10), torch::indexing::Slice(4, 8)}, 1);
  set.model_version = 2;
  set.click_revision = 5;
  Result<v1::MaskResult> mask = aggregate(set);
  ASSERT_TRUE(mask.ok()) << mask.status().ToString();
  EXPECT_EQ(mask->width(), 32u);
  EXPECT_EQ(mask->height(), 16u);
  ASSERT_EQ(mask->mask().size(), 32u * 16u);
  EXPECT_EQ(mask->model_version(), 2u);
  EXPECT_EQ(mask->click_revision(), 5u);
  EXPECT_EQ(mask->samples(), 4u);
  EXPECT_EQ(mask->aggregation(), "majority");
  // Grid rows 6..9 are image rows 4..11 (the 32x16 image sits in rows 4..11 of the 16x16 grid);
  // grid columns 4..7 are image columns 8..15.
  EXPECT_EQ(mask->mask()[8 * 32 + 12], 1);
  EXPECT_EQ(mask->mask()[8 * 32 + 25], 0);
  EXPECT_EQ(mask->mask()[0], 0);
  // All four samples agree: no uncertainty inside or far outside (edges blend when resized).
  EXPECT_EQ(mask->uncertainty()[8 * 32 + 12], 0);
  EXPECT_EQ(mask->uncertainty()[0], 0);
}

TEST(AggregateTest, TheMaskSnapsToTheEdgesOfTheImageInItsPayloadAndADamagedOneOnlyLosesThat) {
  // A 32x16 gray PNG, bright from column 10 on; on a 16-cell grid (2 px a cell) every sample draws
  // the object from grid column 6, image column 12.
  std::vector<uint8_t> pixels(32 * 16, 50);
  for (int y = 0; y < 16; ++y) {
    for (int x = 10; x < 32; ++x) pixels[static_cast<size_t>(y) * 32 + x] = 200;
  }
  SampleSet set;
  set.request = RequestFor("ds", "a");
  set.image = testutil::PngImageEvent("a", 32, 16);
  set.mapping = model::MakeGridMapping(32, 16, 16).value();
  const std::vector<uint8_t> png = EncodePngGray8(pixels, 32, 16).value();
  set.image.set_payload(png.data(), png.size());
  set.samples = torch::zeros({4, 16, 16}, torch::kInt64);
  set.samples.slice(2, 6).fill_(1);
  model::AggregatorOptions options;
  options.rule = model::AggregationRule::kMajority;
  options.edge_band = 2;  // 4 px
  const auto first_column = [](const v1::MaskResult& m) {
    for (int x = 0; x < 32; ++x) {
      if (m.mask()[8 * 32 + x] == 1) return x;
    }
    return -1;
  };
  Result<v1::MaskResult> snapped = Aggregate(model::Aggregator::Create(options).value())(set);
  ASSERT_TRUE(snapped.ok()) << snapped.status().ToString();
  EXPECT_EQ(first_column(*snapped), 10);
  // A payload that no longer decodes: the mask is still published, with the grid's edges.
  SampleSet damaged = set;
  damaged.image.set_payload(set.image.payload().substr(0, 40));
  Result<v1::MaskResult> plain = Aggregate(model::Aggregator::Create(options).value())(damaged);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(first_column(*plain), 12);
  options.edge_band = 0;
  Result<v1::MaskResult> off = Aggregate(model::Aggregator::Create(options).value())(set);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(first_column(*off), 12);
}

}  // namespace
}  // namespace clickdiff
