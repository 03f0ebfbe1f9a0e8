#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "io/embedded_broker.h"
#include "tests/services/run_cli.h"

namespace clickdiff {
namespace {

using ::testing::HasSubstr;

const std::string kSourceDir = CLICKDIFF_SOURCE_DIR;

using testutil::CliRun;

CliRun Cli(std::vector<std::string> args) { return testutil::RunClickdiff(std::move(args)); }

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(CliTest, VersionAndHelpExitZero) {
  CliRun v = Cli({"--version"});
  EXPECT_EQ(v.code, 0);
  EXPECT_THAT(v.out, HasSubstr("clickdiff 0."));
  CliRun h = Cli({"--help"});
  EXPECT_EQ(h.code, 0);
  EXPECT_THAT(h.out, HasSubstr("config"));
  EXPECT_THAT(h.out, HasSubstr("info"));
}

TEST(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Cli({}).code, 2);
  EXPECT_EQ(Cli({"no-such-command"}).code, 2);
  EXPECT_EQ(Cli({"config", "check"}).code, 2);
  // Which masks the annotator saves: reached or all, nothing else.
  CliRun save = Cli({"annotate", "--images", ".", "--truth", ".", "--save-masks", "some"});
  EXPECT_EQ(save.code, 2);
  EXPECT_THAT(save.err, HasSubstr("reached"));
}

TEST(CliTest, StatsAndSubscribeWithoutARunningServiceNameTheRuntimeFile) {
  const std::string store = "store.path=" + ::testing::TempDir() + "no_service/db";
  for (const char* command : {"stats", "subscribe"}) {
    CliRun run = Cli({command, "--set", store});
    EXPECT_EQ(run.code, 1) << command;
    EXPECT_THAT(run.err, HasSubstr("clickdiffd.json")) << command;
  }
  CliRun nothing = Cli({"produce", "--set", store, "--bootstrap", "127.0.0.1:1"});
  EXPECT_EQ(nothing.code, 1);
  EXPECT_THAT(nothing.err, HasSubstr("nothing to send"));
}

TEST(CliTest, ProduceWaitsForRoomWhenItOutrunsTheBroker) {
  // A local queue of 5 records and 400 clicks sent as fast as it can: each full queue is waited
  // out (the flood found `produce` failing at its first), nothing is dropped.
  std::unique_ptr<EmbeddedBroker> broker = EmbeddedBroker::Start(1).value();
  std::ostringstream clicks;
  for (int i = 0; i < 400; ++i) {
    clicks << R"({"image": "img)" << i << R"(.png", "x": 1, "y": 2, "class": 1})"
           << "\n";
  }
  CliRun run =
      Cli({"produce", "--set", "kafka.properties.queue.buffering.max.messages=5", "--bootstrap",
           broker->bootstrap_servers(), "--clicks", WriteTemp("flood_clicks.jsonl", clicks.str())});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out).at("clicks"), 400) << run.out;
}

TEST(CliTest, ConfigCheckAcceptsTheShippedConfigs) {
  for (const char* file : {"/config/default.yaml", "/config/production.example.yaml"}) {
    CliRun r = Cli({"config", "check", kSourceDir + file});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("config OK"));
  }
}

TEST(CliTest, ConfigCheckFailsNamingTheKey) {
  struct Case {
    std::string yaml;
    std::string key;
  };
  for (const Case& c : {Case{"model:\n  levels: four\n", "model.levels"},     // wrong type
                        Case{"sampler:\n  samples: 0\n", "sampler.samples"},  // out of range
                        Case{"trainer:\n  batch_sise: 4\n", "trainer.batch_sise"}}) {  // unknown
    CliRun r = Cli({"config", "check", WriteTemp("bad.yaml", c.yaml)});
    EXPECT_EQ(r.code, 1) << c.yaml;
    EXPECT_THAT(r.err, HasSubstr(c.key));
  }
}

TEST(CliTest, ConfigCheckAppliesSetOverrides) {
  std::string file = kSourceDir + "/config/default.yaml";
  EXPECT_EQ(Cli({"config", "check", file, "--set", "model.method=gaussian_x0"}).code, 0);
  CliRun bad = Cli({"config", "check", file, "--set", "model.levels=0"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.err, HasSubstr("--set model.levels=0"));
}

TEST(CliTest, ConfigDumpPrintsEffectiveYaml) {
  CliRun r = Cli({"config", "dump", "--config", kSourceDir + "/config/default.yaml", "--set",
                  "sampler.samples=5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("samples: 5"));
}

TEST(CliTest, InfoReportsTorchBlasThreadsAndAMeasuredSpeed) {
  CliRun r = Cli({"info", "--json", "--config", kSourceDir + "/config/default.yaml"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["torch_version"].get<std::string>().substr(0, 2), "1.");
  EXPECT_FALSE(j["blas"].get<std::string>().empty());
  EXPECT_GE(j["intra_op_threads"].get<int>(), 1);
  EXPECT_GE(j["cuda_devices"].get<int>(), 0);
  EXPECT_GT(j["matmul_gflops"].get<double>(), 0.0);  // measured, not asserted as a speed
}

}  // namespace
}  // namespace clickdiff
