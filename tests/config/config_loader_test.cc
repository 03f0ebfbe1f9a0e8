#include "config/config_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

namespace clickdiff {
namespace {

using ::testing::HasSubstr;

const std::string kSourceDir = CLICKDIFF_SOURCE_DIR;

Result<Config> Load(const std::string& yaml, ConfigOverrides overrides = {}) {
  return LoadConfigString(yaml, "test.yaml", overrides);
}

// Loads `yaml` and returns the error message; fails the test if loading succeeded.
std::string ErrorOf(const std::string& yaml, ConfigOverrides overrides = {}) {
  Result<Config> r = Load(yaml, std::move(overrides));
  EXPECT_FALSE(r.ok()) << "expected an error for:\n" << yaml;
  return r.ok() ? "" : r.status().message();
}

TEST(ConfigLoaderTest, DefaultFileLoadsWithEmbeddedSettings) {
  Result<Config> c = LoadConfigFile(kSourceDir + "/config/default.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->mode, Mode::kEmbedded);
  EXPECT_EQ(c->kafka.bootstrap_servers, "");
  EXPECT_EQ(c->store.path, "./var/db");
  EXPECT_THAT(c->zmq.publish_endpoint, HasSubstr("127.0.0.1"));
  EXPECT_EQ(c->compute.device.kind, model::DeviceSpec::Kind::kCpu);
  EXPECT_EQ(c->model.d3pm.steps, 200);
  EXPECT_DOUBLE_EQ(c->model.loss.focal_alpha, 0.999);
  // A dense pixel weighs what an unclicked one does: 1 - focal_alpha.
  EXPECT_NEAR(c->model.loss.dense_weight, 1 - c->model.loss.focal_alpha, 1e-12);
  EXPECT_TRUE(c->teacher.clicked_masks);
  EXPECT_EQ(c->model.click_guidance, model::ClickGuidanceKind::kGeodesic);
  Result<Config> off =
      Load("teacher:\n  clicked_masks: false\nmodel:\n  click_guidance: gaussian\n");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->teacher.clicked_masks);
  EXPECT_EQ(off->model.click_guidance, model::ClickGuidanceKind::kGaussian);
  EXPECT_THAT(ErrorOf("model:\n  click_guidance: disk\n"), HasSubstr("model.click_guidance"));
  EXPECT_EQ(c->kafka.instance_id, "auto");
  EXPECT_EQ(Load("kafka:\n  instance_id: \"\"\n")->kafka.instance_id, "");
  EXPECT_EQ(Load("kafka:\n  instance_id: worker-3\n")->kafka.instance_id, "worker-3");
  EXPECT_THAT(ErrorOf("kafka:\n  instance_id: a/b\n"), HasSubstr("kafka.instance_id"));
}

TEST(ConfigLoaderTest, ProductionExampleLoadsWithPassThroughKafkaProperties) {
  Result<Config> c = LoadConfigFile(kSourceDir + "/config/production.example.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->mode, Mode::kExternal);
  EXPECT_THAT(c->kafka.bootstrap_servers, HasSubstr(":9093"));
  EXPECT_EQ(c->kafka.properties.at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(c->kafka.properties.at("sasl.mechanisms"), "SCRAM-SHA-512");
  EXPECT_EQ(c->model.num_classes, 4);
  // Safe as shipped: the sockets hand out images, so bound on every interface they encrypt and let
  // in only the clients on an allow-list.
  EXPECT_THAT(c->zmq.publish_endpoint, HasSubstr("tcp://0.0.0.0:"));
  EXPECT_TRUE(c->zmq.curve.enabled);
  EXPECT_FALSE(c->zmq.curve.server_key_file.empty());
  EXPECT_FALSE(c->zmq.curve.client_keys_dir.empty());
  EXPECT_TRUE(c->zmq.curve.server_secret_key.empty()) << "no secret in the example";
  // Either the server's key file or its inline keys, not both.
  EXPECT_THAT(ErrorOf("zmq:\n  curve:\n    server_key_file: /k\n    server_public_key: "
                      "\"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n"),
              HasSubstr("not both"));
  EXPECT_THAT(ErrorOf("zmq:\n  curve:\n    enabled: true\n"), HasSubstr("server_key_file"));
  EXPECT_THAT(ErrorOf("zmq:\n  curve:\n    client_keys: [short]\n"),
              HasSubstr("zmq.curve.client_keys[0]"));
  // A librdkafka property from a file, or inline: one way only.
  EXPECT_EQ(Load("kafka:\n  property_files:\n    sasl.password: /run/secrets/kafka\n")
                ->kafka.property_files.at("sasl.password"),
            "/run/secrets/kafka");
  EXPECT_THAT(ErrorOf("kafka:\n  properties:\n    sasl.password: x\n  property_files:\n    "
                      "sasl.password: /run/secrets/kafka\n"),
              HasSubstr("kafka.property_files.sasl.password"));
}

TEST(ConfigLoaderTest, EmptyDocumentGivesDefaults) {
  Result<Config> c = Load("");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model.method, Config().model.method);
  EXPECT_EQ(c->sampler.samples, Config().sampler.samples);
}

TEST(ConfigLoaderTest, UnknownKeyIsRejectedWithItsPathLineAndASuggestion) {
  std::string e = ErrorOf("model:\n  levels: 4\n  levles: 3\n");
  EXPECT_THAT(e, HasSubstr("test.yaml:3"));
  EXPECT_THAT(e, HasSubstr("model.levles: unknown key"));
  EXPECT_THAT(e, HasSubstr("did you mean 'model.levels'"));
}

TEST(ConfigLoaderTest, UnknownSectionIsRejected) {
  EXPECT_THAT(ErrorOf("kafak:\n  group_id: x\n"), HasSubstr("kafak: unknown key"));
}

TEST(ConfigLoaderTest, WrongTypeNamesKeyAndExpectedType) {
  std::string e = ErrorOf("model:\n  levels: four\n");
  EXPECT_THAT(e, HasSubstr("model.levels"));
  EXPECT_THAT(e, HasSubstr("expected an integer in [1, 6]"));
  EXPECT_THAT(e, HasSubstr("'four'"));
}

TEST(ConfigLoaderTest, FractionForIntegerIsAWrongType) {
  EXPECT_THAT(ErrorOf("sampler:\n  samples: 2.5\n"),
              HasSubstr("sampler.samples: expected an integer"));
}

TEST(ConfigLoaderTest, BooleanRejectsNonBoolean) {
  EXPECT_THAT(ErrorOf("store:\n  sync: maybe\n"), HasSubstr("store.sync: expected true or false"));
}

TEST(ConfigLoaderTest, SectionGivenAsScalarIsRejected) {
  EXPECT_THAT(ErrorOf("model: 3\n"), HasSubstr("model: expected a section of keys"));
}

TEST(ConfigLoaderTest, ListExpectedButScalarGiven) {
  EXPECT_THAT(ErrorOf("model:\n  class_names: organ\n"),
              HasSubstr("model.class_names: expected a list"));
}

TEST(ConfigLoaderTest, OutOfRangeIntegerNamesKeyAndRange) {
  std::string e = ErrorOf("model:\n  levels: 9\n");
  EXPECT_THAT(e, HasSubstr("model.levels"));
  EXPECT_THAT(e, HasSubstr("[1, 6]"));
  EXPECT_THAT(e, HasSubstr("got 9"));
}

TEST(ConfigLoaderTest, OutOfRangeRealAndOpenBoundAreRejected) {
  EXPECT_THAT(ErrorOf("model:\n  loss:\n    focal_alpha: 1.5\n"),
              HasSubstr("model.loss.focal_alpha: expected a number in (0, 1]"));
  EXPECT_THAT(ErrorOf("model:\n  loss:\n    dense_weight: 0\n"),
              HasSubstr("model.loss.dense_weight: expected a number in (0, 1]"));
  EXPECT_THAT(ErrorOf("trainer:\n  learning_rate: 0\n"), HasSubstr("trainer.learning_rate"));
  EXPECT_THAT(ErrorOf("aggregator:\n  threshold: .nan\n"), HasSubstr("aggregator.threshold"));
}

TEST(ConfigLoaderTest, ChoiceRejectsUnknownValueAndListsAllowed) {
  std::string e = ErrorOf("model:\n  method: ddpm\n");
  EXPECT_THAT(e, HasSubstr("model.method"));
  EXPECT_THAT(e, HasSubstr("one of 'd3pm', 'gaussian_x0', 'unet'"));
}

TEST(ConfigLoaderTest, StringChecksRejectBadTopicEndpointDeviceAndKey) {
  EXPECT_THAT(ErrorOf("kafka:\n  topics:\n    images: 'bad topic'\n"),
              HasSubstr("kafka.topics.images"));
  EXPECT_THAT(ErrorOf("kafka:\n  topics:\n    clicks: ''\n"),
              HasSubstr("kafka.topics.clicks: must not be empty"));
  EXPECT_THAT(ErrorOf("zmq:\n  publish_endpoint: 127.0.0.1:5556\n"),
              HasSubstr("zmq.publish_endpoint"));
  EXPECT_THAT(ErrorOf("compute:\n  device: gpu0\n"), HasSubstr("compute.device"));
  EXPECT_THAT(ErrorOf("zmq:\n  curve:\n    server_public_key: short\n"),
              HasSubstr("40 characters"));
}

TEST(ConfigLoaderTest, InconsistentCombinationsNameTheKeys) {
  EXPECT_THAT(ErrorOf("kafka:\n  bootstrap_servers: host:9092\n"),
              HasSubstr("kafka.bootstrap_servers: must be empty in embedded mode"));
  EXPECT_THAT(ErrorOf("mode: external\n"), HasSubstr("kafka.bootstrap_servers: required"));
  EXPECT_THAT(ErrorOf("model:\n  num_classes: 3\n"), HasSubstr("model.class_names: has 2 names"));
  EXPECT_THAT(ErrorOf("model:\n  resolution: 60\n"), HasSubstr("model.resolution"));
  EXPECT_THAT(ErrorOf("sampler:\n  samples: 2\n  shards: 4\n"), HasSubstr("sampler.shards"));
  EXPECT_THAT(ErrorOf("teacher:\n  mode: mean\n"), HasSubstr("teacher.mode"));
  EXPECT_THAT(ErrorOf("zmq:\n  curve:\n    enabled: true\n"), HasSubstr("zmq.curve"));
  EXPECT_THAT(ErrorOf("trainer:\n  held_out_images: 1\n"),
              HasSubstr("trainer.held_out_images: 1 image cannot judge"));
}

TEST(ConfigLoaderTest, MalformedYamlNamesTheLine) {
  std::string e = ErrorOf("model:\n  levels: [1, 2\n");
  EXPECT_THAT(e, HasSubstr("test.yaml:"));
  EXPECT_THAT(e, HasSubstr("not valid YAML"));
}

TEST(ConfigLoaderTest, MissingFileIsNotFound) {
  Result<Config> c = LoadConfigFile("/nonexistent/clickdiff.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/clickdiff.yaml"));
}

TEST(ConfigLoaderTest, EnvironmentOverridesFileAndSetOverridesEnvironment) {
  ConfigOverrides o;
  o.environment = {{"CLICKDIFF_SAMPLER_SAMPLES", "32"}, {"CLICKDIFF_MODEL_METHOD", "gaussian_x0"}};
  o.set = {"sampler.samples=64"};
  Result<Config> c = Load("sampler:\n  samples: 8\n", o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->sampler.samples, 64);
  EXPECT_EQ(c->model.method, model::Method::kGaussianX0);
}

TEST(ConfigLoaderTest, SetAcceptsFlowListsAndCreatesSections) {
  ConfigOverrides o;
  o.set = {"model.num_classes=4", "model.class_names=[bg, rv, myo, lv]"};
  Result<Config> c = Load("", o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model.class_names.size(), 4u);
  EXPECT_EQ(c->model.class_names[3], "lv");
}

TEST(ConfigLoaderTest, SetReachesIntoPassThroughMapWithDottedKeys) {
  ConfigOverrides o;
  o.set = {"kafka.properties.sasl.mechanism=PLAIN", "kafka.properties.linger.ms=5"};
  Result<Config> c = Load("kafka:\n  properties:\n    acks: all\n", o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->kafka.properties.at("sasl.mechanism"), "PLAIN");
  EXPECT_EQ(c->kafka.properties.at("linger.ms"), "5");
  EXPECT_EQ(c->kafka.properties.at("acks"), "all");
}

TEST(ConfigLoaderTest, BadOverrideNamesItsSource) {
  ConfigOverrides env;
  env.environment = {{"CLICKDIFF_MODEL_LEVELS", "99"}};
  EXPECT_THAT(ErrorOf("", env), HasSubstr("environment CLICKDIFF_MODEL_LEVELS: model.levels"));

  ConfigOverrides set;
  set.set = {"sampler.sampels=3"};
  std::string e = ErrorOf("", set);
  EXPECT_THAT(e, HasSubstr("--set sampler.sampels=3"));
  EXPECT_THAT(e, HasSubstr("did you mean 'sampler.samples'"));

  ConfigOverrides malformed;
  malformed.set = {"no-equals-sign"};
  EXPECT_THAT(ErrorOf("", malformed), HasSubstr("expected key=value"));
}

TEST(ConfigLoaderTest, UnknownClickdiffEnvironmentVariableIsRejected) {
  ConfigOverrides o;
  o.environment = {{"CLICKDIFF_SAMPLER_SAMPELS", "3"}};
  EXPECT_THAT(ErrorOf("", o),
              HasSubstr("CLICKDIFF_SAMPLER_SAMPELS is not a configuration variable"));
  o.environment = {{"CLICKDIFF_CONFIG", "some.yaml"}};  // names the file, not a key
  EXPECT_TRUE(Load("", o).ok());
}

TEST(ConfigLoaderTest, EveryKeyHasADistinctEnvironmentVariable) {
  std::set<std::string> names;
  for (const auto& [key, allowed] : DescribeConfigKeys()) {
    EXPECT_TRUE(names.insert(EnvironmentVariableFor(key)).second) << key;
    EXPECT_FALSE(allowed.empty()) << key;
  }
  EXPECT_EQ(EnvironmentVariableFor("model.d3pm.steps"), "CLICKDIFF_MODEL_D3PM_STEPS");
}

TEST(ConfigLoaderTest, DumpLoadsBackToTheSameConfig) {
  ConfigOverrides o;
  o.set = {"model.method=unet", "sampler.samples=7", "kafka.properties.acks=all",
           "trainer.learning_rate=0.003"};
  Result<Config> first = Load("", o);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::string dumped = DumpConfig(*first);
  Result<Config> second = LoadConfigString(dumped, "dump");
  ASSERT_TRUE(second.ok()) << second.status().ToString() << "\n" << dumped;
  EXPECT_EQ(DumpConfig(*second), dumped);
  EXPECT_EQ(second->model.method, model::Method::kUNet);
  EXPECT_EQ(second->sampler.samples, 7);
  EXPECT_EQ(second->kafka.properties.at("acks"), "all");
  EXPECT_DOUBLE_EQ(second->trainer.learning_rate, 0.003);
}

TEST(ConfigLoaderTest, DumpRedactsSecrets) {
  ConfigOverrides o;
  o.set = {"kafka.properties.sasl.username=annotator", "kafka.properties.sasl.password=hunter2",
           "kafka.properties.ssl.key.password=swordfish",
           "zmq.curve.server_secret_key=" + std::string(40, 'k')};
  Result<Config> config = Load("", o);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::string dumped = DumpConfig(*config);
  for (const char* secret : {"hunter2", "swordfish", "kkkkkkkkkk"}) {
    EXPECT_EQ(dumped.find(secret), std::string::npos) << secret << " in\n" << dumped;
  }
  EXPECT_NE(dumped.find("sasl.username: annotator"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("sasl.password: <redacted>"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("server_secret_key: <redacted>"), std::string::npos) << dumped;
  EXPECT_NE(DumpConfig(*config, /*show_secrets=*/true).find("hunter2"), std::string::npos);
  EXPECT_TRUE(IsSecretConfigKey("kafka.properties.sasl.oauthbearer.client.secret"));
  EXPECT_FALSE(IsSecretConfigKey("kafka.properties.sasl.mechanisms"));
  EXPECT_FALSE(IsSecretConfigKey("zmq.curve.server_public_key"));
}

}  // namespace
}  // namespace clickdiff
