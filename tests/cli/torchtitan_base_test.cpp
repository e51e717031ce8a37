// torchtitan's own Qwen3 train configs as a study's base (issue 22): every
// train config torchtitan v0.2.2 ships for qwen3 (its keys and values in
// tests/fixtures/torchtitan_v0.2.2) plans and runs on the embedded trainer,
// with a small flavor and sequence for a CPU. Their [quantize.linear.float8]
// sections hold keys the trainer does not implement, with the feature off
// (model.converters empty): accepted. A feature that is on is refused at plan
// time, naming the key, its value and what would run.
// Needs the trainer (built unless -DPARTUNE_TRAINER=OFF; CI builds it).
#include <gtest/gtest.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

// An embedded-backend CPU study on `config` with a small flavor of the same
// kind (dense or MoE) and a short sequence; `extra` adds [base.*] tables.
std::string study_on(const TempDir& dir, const std::string& config, const std::string& flavor,
                     const std::string& extra = "") {
  const std::string path = dir.file("space.toml");
  write_file(path, "[study]\nname = \"prod\"\ndb = \"" + dir.file("prod.db") +
                       "\"\nobjective = \"tps\"\n\n"
                       "[hardware]\ndevice_type = \"cpu\"\ndevices = 1\n\n"
                       "[backend]\nkind = \"embedded\"\ntrainer = \"" +
                       kTrainer +
                       "\"\nenv = { OMP_NUM_THREADS = \"1\" }\n\n"
                       "[trial]\nsteps = 2\nwarmup_steps = 1\ntimeout_s = 120\n\n"
                       "[base]\nconfig_file = \"" +
                       kFixtures + "/torchtitan_v0.2.2/" + config + "\"\n\n[base.model]\nflavor = \"" + flavor +
                       "\"\n" + extra + "\n[space]\n\"training.seq_len\" = [32]\n\n[search]\nstrategy = \"grid\"\n");
  return path;
}

class TorchtitanQwen3Config : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(TorchtitanQwen3Config, PlansAndRunsAsTheBase) {
  REQUIRE_TRAINER();
  const auto& [config, flavor] = GetParam();
  TempDir dir;
  const std::string space = study_on(dir, config, flavor);
  Result plan = tune({"plan", "--space", space, "--format", "json"}, dir.path(), 60);
  ASSERT_EQ(plan.exit_code, 0) << plan.describe();
  EXPECT_EQ(json_of(plan)["candidates"].size(), 1u) << plan.out;
  Result run = tune({"run", "--space", space, "--plain"}, dir.path(), 240);
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  EXPECT_NE(run.out.find("1 done, 0 failed"), std::string::npos) << run.out;
  // The trial trained the base's settings under the overrides: its config
  // file holds the float8 section as the base has it.
  const std::string id = query(dir.file("prod.db"), "SELECT id FROM trials").at(0).at(0);
  const std::string trial = read_file((dir.path() / "prod" / ("trial-" + id) / "config.toml").string());
  EXPECT_NE(trial.find("[quantize.linear.float8]\nenable_fsdp_float8_all_gather = false\n"), std::string::npos)
      << trial;
  EXPECT_EQ(query(dir.file("prod.db"), "SELECT count(*) FROM steps WHERE trial = '" + id + "'").at(0).at(0), "2");
}

INSTANTIATE_TEST_SUITE_P(EveryQwen3TrainConfig, TorchtitanQwen3Config,
                         ::testing::Values(std::pair{"qwen3_0.6b.toml", "tiny"}, std::pair{"qwen3_1.7b.toml", "tiny"},
                                           std::pair{"qwen3_32b.toml", "tiny"},
                                           std::pair{"qwen3_moe_debug.toml", "tiny_moe"}),
                         [](const auto& info) {
                           std::string name = info.param.first;
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// Turning float8 on (model.converters) is refused before anything runs,
// naming the key, its value and what would run.
TEST(TorchtitanQwen3Config, AFeatureThatIsOnIsRefusedSayingWhatWouldRun) {
  REQUIRE_TRAINER();
  TempDir dir;
  const std::string space =
      study_on(dir, "qwen3_moe_debug.toml", "tiny_moe", "converters = [\"quantize.linear.float8\"]\n");
  Result r = tune({"plan", "--space", space}, dir.path(), 60);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find(space + ":" + std::to_string(line_of(space, "converters")) + ":"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("key 'model.converters' = [\"quantize.linear.float8\"] is not implemented by the embedded "
                       "trainer; it runs with model.converters = [] (torchtitan's default)"),
            std::string::npos)
      << r.err;
  // A float8 key set on while the converter is off changes nothing: accepted.
  const std::string off = study_on(dir, "qwen3_moe_debug.toml", "tiny_moe",
                                   "\n[base.quantize.linear.float8]\nenable_fsdp_float8_all_gather = true\n");
  Result ok = tune({"plan", "--space", off}, dir.path(), 60);
  EXPECT_EQ(ok.exit_code, 0) << ok.describe();
}

}  // namespace
}  // namespace partune::cli_testing
