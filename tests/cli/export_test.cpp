// `tune export` round trips: the TOML parses back to the trial's production
// config (the base with the trial's axes applied, not the short trial's step
// count), the CLI form is the axes as overrides, and -o writes a file.
#include <gtest/gtest.h>

#include <sstream>

#include "cli_testing.h"
#include "common/job_config.h"

namespace partune::cli_testing {
namespace {

// The base job config of the study below, as a torchtitan job-config TOML.
const char* kBaseJob = R"([model]
name = "qwen3"
flavor = "debugmodel_moe"

[training]
seq_len = 256
steps = 1000
)";

class Export : public ::testing::Test {
 protected:
  void SetUp() override {
    SpaceOptions o;
    o.base = "[base.training]\nseq_len = 256\nsteps = 1000\n";
    study_ = write_space(dir_, o);
    Result run = tune({"--space", study_.space}, dir_.path());
    ASSERT_EQ(run.exit_code, 0) << run.describe();
    auto best = json_of(tune({"best", "--db", study_.db, "--top", "1", "--format", "json"}, dir_.path()));
    ASSERT_EQ(best.size(), 1u);
    best_ = best[0];
  }

  // What an export must parse back to: the trial's full job config as the
  // db has it (`show --format json`), which holds the base with the trial's
  // axes applied, less the values the planner resolved for this world size
  // that the base leaves to torchtitan (data_parallel_shard_degree,
  // global_batch_size: not tuned here, unset in the base).
  JobConfig expected(const nlohmann::json& trial) {
    auto shown = json_of(run({"show", "--db", study_.db, trial.value("id", "?"), "--format", "json"}));
    JobConfig c;
    for (const auto& [key, v] : shown["job_config"].items()) c.set(key, value_from_json(key, v, "show"));
    JobConfig base = JobConfig::from_toml_string(kBaseJob, "base");
    for (const auto& [key, v] : trial["config"].items()) base.set(key, value_from_json(key, v, "axes"));
    for (const auto& [key, v] : base.values()) EXPECT_EQ(c.get(key), v) << key;
    c.erase("parallelism.data_parallel_shard_degree");
    c.erase("training.global_batch_size");
    return c;
  }

  // Equal configs, shown as TOML when they differ.
  static void expect_same(const JobConfig& got, const JobConfig& want) { EXPECT_EQ(got.to_toml(), want.to_toml()); }

  Result run(const std::vector<std::string>& args) { return tune(args, dir_.path()); }

  TempDir dir_;
  Study study_;
  nlohmann::json best_;
};

TEST_F(Export, BestTomlParsesBackToTheTrialsFullConfig) {
  Result r = run({"export", "--db", study_.db, "--best"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("# trial: " + best_.value("id", "?")), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# measured: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("left to torchtitan (not written): parallelism.data_parallel_shard_degree = 1, "
                       "training.global_batch_size = "),
            std::string::npos)
      << r.out;
  JobConfig parsed = JobConfig::from_toml_string(r.out, "export");
  expect_same(parsed, expected(best_));
  EXPECT_EQ(parsed.get_int("training.steps"), 1000) << "the trial's short step count leaked into the export";

  // The same through --trial with an id prefix, for every trial.
  for (const auto& t : json_of(run({"list", "--db", study_.db, "--format", "json"}))) {
    Result one = run({"export", "--db", study_.db, "--trial", t.value("id", "").substr(0, 8)});
    ASSERT_EQ(one.exit_code, 0) << one.describe();
    expect_same(JobConfig::from_toml_string(one.out, "export"), expected(t));
  }
}

TEST_F(Export, CliFormatGivesTheAxesAsOverrides) {
  Result r = run({"export", "--db", study_.db, "--best", "--format", "cli"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::istringstream in(r.out);
  std::vector<std::string> tokens;
  for (std::string tok; in >> tok;) tokens.push_back(tok);
  EXPECT_EQ(tokens.size(), 2 * best_["config"].size()) << r.out;
  JobConfig applied = JobConfig::from_toml_string(kBaseJob, "base");
  applied.apply_cli(tokens);
  JobConfig want = JobConfig::from_toml_string(kBaseJob, "base");
  for (const auto& [key, v] : best_["config"].items()) want.set(key, value_from_json(key, v, "axes"));
  expect_same(applied, want);
}

TEST_F(Export, OutputFileAndJsonFormat) {
  const std::string file = dir_.file("best.toml");
  Result r = run({"export", "--db", study_.db, "--best", "-o", file});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("wrote " + file), std::string::npos) << r.err;
  expect_same(JobConfig::from_toml_file(file), expected(best_));

  auto j = json_of(run({"export", "--db", study_.db, "--best", "--format", "json"}));
  EXPECT_EQ(j["id"], best_["id"]);
  EXPECT_EQ(j["job_config"]["training.steps"], 1000);
  EXPECT_EQ(j["cli"].size(), 2 * best_["config"].size());
}

}  // namespace
}  // namespace partune::cli_testing
