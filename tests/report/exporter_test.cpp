// Exports: the TOML parses back to the same job config, the CLI overrides
// apply back to the same axes, and the header carries the measured numbers.
#include "tuner/report/exporter.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/store/test_support.h"
#include "tuner/report/report.h"

namespace partune {
namespace {

TrialRecord winner() {
  Candidate c = testing::candidate(2, 4, 8, "full");
  c.config.set("job.description", std::string("tuned: \"best\" \\ run"));
  c.config.set("training.dataloader.num_workers", int64_t{2});
  c.config.set("optimizer.eps", 1e-8);
  c.config.set("checkpoint.enable", false);
  c.config.set("activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns",
               StringList{"moe.router.gate", "a b"});
  TrialRecord r;
  r.study = "moe-8xh100";
  r.id = "3fa9c0d2e1b4";
  r.status = TrialStatus::Done;
  r.axes = c.axes;
  r.config = c.config;
  r.attempt = 1;
  r.metrics.mfu = 34.95;
  r.metrics.tps = 12345;
  r.metrics.tflops = 345.67;
  r.metrics.memory_gib = 71.5;
  r.metrics.memory_pct = 51.17;
  r.metrics.counted_steps = 10;
  r.finished_at = "2025-06-01T03:04:05Z";
  return r;
}

TEST(ExportToml, ParsesBackToTheSameConfig) {
  const TrialRecord r = winner();
  const std::string toml = export_toml(r);
  EXPECT_EQ(JobConfig::from_toml_string(toml, "export.toml"), r.config) << toml;
}

TEST(ExportToml, HeaderCarriesTheMeasuredNumbers) {
  const std::string toml = export_toml(winner());
  for (const char* part :
       {"exported by partune", "# study: moe-8xh100", "# trial: 3fa9c0d2e1b4 (status done", "mfu 34.95%", "tps 12,345",
        "tflops 345.67", "memory 71.50GiB(51.17%)", "alloc retries 0", "# measured at: 2025-06-01T03:04:05Z",
        "# exported at: 20", "# tuned overrides: --activation_checkpoint.mode full"})
    EXPECT_NE(toml.find(part), std::string::npos) << part << " in\n" << toml;
  // Everything before the first table is comment or blank.
  const std::string head = toml.substr(0, toml.find("\n["));
  for (size_t at = 0, nl; (nl = head.find('\n', at)) != std::string::npos; at = nl + 1)
    EXPECT_TRUE(nl == at || head[at] == '#') << head.substr(at, nl - at);
}

TEST(ExportToml, NewlinesInNamesCannotBreakTheHeader) {
  TrialRecord r = winner();
  r.study = "evil\n[training]\nsteps = 1";
  const std::string toml = export_toml(r);
  EXPECT_EQ(JobConfig::from_toml_string(toml, "export.toml"), r.config) << toml;
}

// With the study's base: the base's values for what was not tuned, the
// tuned values, and resolved values left to torchtitan where the base left
// them (named in the header).
TEST(ExportToml, FromTheBaseKeepsItsValuesAndLeavesResolvedOnesToTorchtitan) {
  TrialRecord r = winner();
  r.config.set("training.global_batch_size", int64_t{64});
  r.config.set("parallelism.data_parallel_shard_degree", int64_t{4});
  r.config.erase("compile.components");  // dropped by the planner: compile off
  JobConfig base;
  base.set("model.name", std::string("qwen3"));
  base.set("checkpoint.enable", true);
  base.set("compile.components", StringList{"loss"});
  base.set("parallelism.data_parallel_shard_degree", int64_t{-1});
  base.set("activation_checkpoint.mode", std::string("selective"));
  const ProductionConfig p = production_config(r, base);
  EXPECT_TRUE(p.config.get_bool("checkpoint.enable"));
  EXPECT_EQ(p.config.get_list("compile.components"), StringList{"loss"});
  EXPECT_EQ(p.config.get_int("parallelism.data_parallel_shard_degree"), -1);
  EXPECT_FALSE(p.config.has("training.global_batch_size"));
  EXPECT_EQ(p.config.get_string("activation_checkpoint.mode"), "full");  // tuned
  for (const auto& [key, value] : r.axes) EXPECT_EQ(p.config.get(key), value) << key;
  EXPECT_EQ(p.resolved, (std::vector<std::string>{"training.global_batch_size = 64",
                                                  "parallelism.data_parallel_shard_degree = 4"}));
  const std::string toml = export_toml(r, base);
  EXPECT_EQ(JobConfig::from_toml_string(toml, "export.toml"), p.config) << toml;
  EXPECT_NE(toml.find("left to torchtitan (not written): training.global_batch_size = 64, "
                      "parallelism.data_parallel_shard_degree = 4\n"),
            std::string::npos)
      << toml;
  // Without a base: the recorded config, as before.
  EXPECT_EQ(production_config(r, std::nullopt).config, r.config);
}

TEST(ExportToml, UnmeasuredNumbersSayNA) {
  TrialRecord r = winner();
  r.metrics = {};
  EXPECT_NE(export_toml(r).find("mfu n/a, tps n/a, tflops n/a, memory -"), std::string::npos);
}

TEST(ExportCli, AxesAsOverridesThatApplyBack) {
  const TrialRecord r = winner();
  const std::string cli = export_cli(r);
  EXPECT_EQ(cli,
            "--activation_checkpoint.mode full --parallelism.expert_parallel_degree 4 "
            "--parallelism.tensor_parallel_degree 2 --training.local_batch_size 8");
  JobConfig applied;
  applied.apply_cli(export_json(r)["cli"].get<std::vector<std::string>>());
  for (const auto& [key, value] : r.axes) EXPECT_EQ(applied.get(key), value) << key;
  EXPECT_EQ(applied.values().size(), r.axes.size());
}

TEST(ExportCli, QuotesWhatAShellWouldSplit) {
  TrialRecord r = winner();
  r.axes = {{"job.description", std::string("it's a run")}, {"compile.enable", true}};
  EXPECT_EQ(export_cli(r), "--compile.enable --job.description 'it'\\''s a run'");
}

TEST(ExportJson, TrialPlusFullConfigAndCli) {
  const TrialRecord r = winner();
  const nlohmann::json j = export_json(r);
  EXPECT_EQ(j["id"], r.id);
  EXPECT_EQ(j["metrics"]["mfu"], 34.95);
  EXPECT_EQ(j["config"].size(), r.axes.size());
  EXPECT_EQ(j["job_config"].size(), r.config.values().size());
  EXPECT_EQ(j["job_config"]["training.dataloader.num_workers"], 2);
  EXPECT_EQ(j["job_config"]["model.converters"], nlohmann::json::array({"float8"}));
  EXPECT_EQ(j["cli"].size(), 8u);
  EXPECT_EQ(j["healthy"], true);
}

}  // namespace
}  // namespace partune
