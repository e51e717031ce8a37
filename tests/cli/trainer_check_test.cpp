// `trainer --check` and the plan-time refusal built on it: values the
// embedded trainer cannot run are refused by `tune plan` / `tune run` with
// exit 2, naming the space file's line and key, before anything launches.
// Needs the trainer (built unless -DPARTUNE_TRAINER=OFF; CI builds it).
#include <gtest/gtest.h>

#include <sstream>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

// `trainer args...` in the test's folder, output captured (no shell).
Result run_trainer(const std::vector<std::string>& args, const TempDir& dir,
                   const std::string& stdin_path = "/dev/null") {
  Spawn spawn;
  spawn.program = kTrainer;
  spawn.stdin_path = stdin_path;
  return run_program(spawn, args, dir.path().string());
}

// An embedded-backend space on one CPU rank.
std::string embedded_space(const TempDir& dir, const std::string& base, const std::string& axes) {
  const std::string path = dir.file("embedded.toml");
  write_file(path, "[study]\nname = \"emb\"\ndb = \"" + dir.file("emb.db") +
                       "\"\n\n[hardware]\ndevice_type = \"cpu\"\ndevices = 1\n\n[backend]\nkind = \"embedded\"\n"
                       "trainer = \"" +
                       kTrainer + "\"\n\n[base.model]\nname = \"qwen3\"\nflavor = \"debugmodel_moe-L2\"\n\n" + base +
                       "\n[space]\n" + axes);
  return path;
}

TEST(TrainerCheck, SaysOkOrTheReasonAndBuildsNothing) {
  REQUIRE_TRAINER();
  TempDir dir;
  write_file(dir.file("job.toml"), "[model]\nname = \"qwen3\"\nflavor = \"debugmodel_moe\"\n");
  Result ok = run_trainer({"--check", "--world-size", "2", "--job.config_file", "job.toml"}, dir);
  EXPECT_EQ(ok.exit_code, 0) << ok.describe();
  EXPECT_EQ(ok.out, "ok\n");
  Result bad =
      run_trainer({"--check", "--job.config_file", "job.toml", "--activation_checkpoint.mode", "memory_budget"}, dir);
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_NE(bad.err.find("key 'activation_checkpoint.mode': 'memory_budget' is not implemented"), std::string::npos)
      << bad.err;
  // World size matters as in a run: TP 3 does not divide 2 ranks.
  Result mesh = run_trainer(
      {"--check", "--world-size", "2", "--job.config_file", "job.toml", "--parallelism.tensor_parallel_degree", "3"},
      dir);
  EXPECT_EQ(mesh.exit_code, 2) << mesh.describe();
  EXPECT_TRUE(fs::is_empty(dir.path()) || fs::directory_iterator(dir.path())->path().filename() == "job.toml");
}

TEST(TrainerCheck, StdinLinesAnswerEachConfig) {
  REQUIRE_TRAINER();
  TempDir dir;
  write_file(dir.file("in.jsonl"),
             "{\"world_size\": 1, \"config\": {\"model.name\": \"qwen3\", \"model.flavor\": \"debugmodel\"}}\n"
             "{\"world_size\": 1, \"config\": {\"model.name\": \"qwen3\", \"model.flavor\": \"debugmodel\", "
             "\"optimizer.name\": \"SGD\"}}\n"
             "not json\n");
  Result r = run_trainer({"--check", "--stdin"}, dir, dir.file("in.jsonl"));  // stdin from the file, no shell
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::istringstream lines(r.out);
  std::string a, b, c;
  std::getline(lines, a);
  std::getline(lines, b);
  std::getline(lines, c);
  EXPECT_EQ(a, "{\"ok\":true}");
  EXPECT_NE(b.find("\"key\":\"optimizer.name\""), std::string::npos) << b;
  EXPECT_NE(b.find("\"ok\":false"), std::string::npos) << b;
  EXPECT_NE(c.find("\"ok\":false"), std::string::npos) << c;
}

// The plan refuses an axis value the trainer cannot run, naming its line.
TEST(TrainerCheck, PlanAndRunRefuseAnAxisValueTheTrainerCannotRun) {
  REQUIRE_TRAINER();
  TempDir dir;
  const std::string space = embedded_space(dir, "", "\"activation_checkpoint.mode\" = [\"full\", \"memory_budget\"]\n");
  const std::string where = space + ":" + std::to_string(line_of(space, "memory_budget")) + ":";
  for (const char* cmd : {"plan", "run"}) {
    Result r = tune({cmd, "--space", space}, dir.path(), 60);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("key 'space.activation_checkpoint.mode': the embedded trainer cannot run \"memory_budget\""),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("is not implemented by the embedded trainer"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir.file("emb.db")));
}

TEST(TrainerCheck, PlanRefusesABaseValueNamingItsLine) {
  REQUIRE_TRAINER();
  TempDir dir;
  const std::string space =
      embedded_space(dir, "[base.optimizer]\nname = \"SGD\"\n", "\"training.local_batch_size\" = [1, 2]\n");
  Result r = tune({"plan", "--space", space}, dir.path(), 60);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  const std::string where = space + ":" + std::to_string(line_of(space, "\"SGD\"")) + ":";
  EXPECT_NE(r.err.find(where), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("key 'optimizer.name'"), std::string::npos) << r.err;
}

TEST(TrainerCheck, ConfigsTheTrainerRunsPlanAsBefore) {
  REQUIRE_TRAINER();
  TempDir dir;
  const std::string space = embedded_space(
      dir, "", "\"activation_checkpoint.mode\" = [\"none\", \"full\"]\n\"compile.enable\" = [false, true]\n");
  Result r = tune({"plan", "--space", space, "--format", "json"}, dir.path(), 60);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(json_of(r)["candidates"].size(), 4u);
}

}  // namespace
}  // namespace partune::cli_testing
