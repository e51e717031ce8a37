// Tuning from a production base: trials are isolated from it (no
// checkpointing, no wandb, every file in the trial's folder), and `export`
// gives the production config back: every base key with the base's value
// unless tuned, nothing the planner resolved for this world size where the
// base left it to torchtitan. Keys and strings that could inject TOML stay
// inert in every file tune writes.
#include <gtest/gtest.h>

#include "cli_testing.h"
#include "common/job_config.h"

namespace partune::cli_testing {
namespace {

// A production job config as a user has it.
const char* kProduction = R"([job]
dump_folder = "/srv/prod/outputs"
description = "production run"

[model]
name = "qwen3"
flavor = "debugmodel_moe"

[training]
seq_len = 256
steps = 50000

[parallelism]
data_parallel_shard_degree = -1

[metrics]
enable_wandb = true
enable_tensorboard = true
save_tb_folder = "/srv/prod/tb"

[checkpoint]
enable = true
folder = "/srv/prod/ckpt"
interval = 1000

[compile]
enable = false
components = ["model"]

[activation_checkpoint]
selective_ac_option = "op"
)";

class ProductionBase : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir_.file("prod.toml"), kProduction);
    SpaceOptions o;
    o.axes = "\"training.local_batch_size\" = [1, 2]\n\"activation_checkpoint.mode\" = [\"none\", \"full\"]\n";
    study_ = write_space(dir_, o);
    // [base] config_file, beside the inline [base.model] write_space adds.
    std::string text = read_file(study_.space);
    text.replace(text.find("[base.model]"), 0, "[base]\nconfig_file = \"prod.toml\"\n\n");
    write_file(study_.space, text);
    Result r = tune({"run", "--space", study_.space}, dir_.path());
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    for (const auto& row : query(study_.db, "SELECT id FROM trials")) ids_.push_back(row.at(0));
    ASSERT_EQ(ids_.size(), 4u);
  }

  TempDir dir_;
  Study study_;
  std::vector<std::string> ids_;
};

TEST_F(ProductionBase, EveryTrialIsIsolated) {
  for (const auto& id : ids_) {
    const fs::path dir = fs::absolute(study_.trial_dir(id));
    const JobConfig trial = JobConfig::from_toml_file((dir / "config.toml").string());
    EXPECT_FALSE(trial.get_bool("checkpoint.enable")) << id;
    EXPECT_FALSE(trial.get_bool("metrics.enable_wandb")) << id;
    EXPECT_EQ(trial.get_string("job.dump_folder"), (dir / "dump").string()) << id;
    // Relative to the dump folder, so inside the trial folder.
    EXPECT_EQ(trial.get_string("metrics.save_tb_folder"), "tb") << id;
    EXPECT_EQ(trial.get_string("checkpoint.folder"), "checkpoint") << id;
  }
}

TEST_F(ProductionBase, ExportRestoresTheBaseAndKeepsEveryKey) {
  Result r = tune({"export", "--db", study_.db, "--best"}, dir_.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const JobConfig exported = JobConfig::from_toml_string(r.out, "export");
  const JobConfig base = JobConfig::from_toml_string(kProduction, "prod");
  // Every base key the study did not tune comes back with its value.
  for (const auto& [key, value] : base.values()) {
    if (key == "activation_checkpoint.mode" || key == "training.local_batch_size") continue;
    ASSERT_TRUE(exported.has(key)) << key << " lost in\n" << r.out;
    EXPECT_EQ(exported.get(key), value) << key << " in\n" << r.out;
  }
  EXPECT_EQ(exported.get_list("compile.components"), StringList{"model"}) << r.out;
  EXPECT_TRUE(exported.get_bool("checkpoint.enable")) << r.out;
  EXPECT_EQ(exported.get_int("training.steps"), 50000) << r.out;
  // Left to torchtitan as the base left it, and said so in the header.
  EXPECT_EQ(exported.get_int("parallelism.data_parallel_shard_degree"), -1) << r.out;
  EXPECT_FALSE(exported.has("training.global_batch_size")) << r.out;
  EXPECT_NE(r.out.find("# resolved by the planner for the study's world size and left to torchtitan (not written): "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("training.global_batch_size = "), std::string::npos) << r.out;
  // The tuned values are there.
  auto best = json_of(tune({"best", "--db", study_.db, "--top", "1", "--format", "json"}, dir_.path()));
  for (const auto& [key, v] : best[0]["config"].items())
    EXPECT_EQ(exported.get(key), value_from_json(key, v, "best")) << key;
}

// A key holding a newline, a string holding DEL: every file tune writes
// (trial configs, the export) parses back to the same values, and nothing is
// injected (a `[checkpoint] enable = true` table would make trials write
// checkpoints).
TEST(TomlInjection, HostileBaseKeysAndStringsStayInert) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.local_batch_size\" = [1]\n";
  o.base =
      "[base.quantize]\n\"x\\n[checkpoint]\\nenable\" = true\n\n"
      "[base.job]\ndescription = \"del \\u007f and a \\\" quote\\n[checkpoint]\\nenable = true\"\n";
  Study s = write_space(dir, o);
  Result run = tune({"run", "--space", s.space}, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  const std::string id = query(s.db, "SELECT id FROM trials").at(0).at(0);
  const std::string trial_file = (s.trial_dir(id) / "config.toml").string();
  const JobConfig trial = JobConfig::from_toml_file(trial_file);
  EXPECT_FALSE(trial.get_bool("checkpoint.enable")) << read_file(trial_file);
  EXPECT_TRUE(trial.get_bool("quantize.x\n[checkpoint]\nenable"));
  EXPECT_EQ(trial.get_string("job.description"), "del \x7f and a \" quote\n[checkpoint]\nenable = true");
  Result exported = tune({"export", "--db", s.db, "--best"}, dir.path());
  ASSERT_EQ(exported.exit_code, 0) << exported.describe();
  const JobConfig back = JobConfig::from_toml_string(exported.out, "export");
  EXPECT_FALSE(back.has("checkpoint.enable")) << exported.out;
  EXPECT_EQ(back.get_string("job.description"), trial.get_string("job.description"));
}

}  // namespace
}  // namespace partune::cli_testing
