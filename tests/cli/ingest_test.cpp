// `tune ingest`: a torchtitan run done by hand, with a custom model flavor,
// becomes a finished trial (noted) that ranks and exports with the rest;
// ingesting it again changes nothing.
#include <gtest/gtest.h>

#include "cli_testing.h"
#include "common/job_config.h"

namespace partune::cli_testing {
namespace {

const char* kHandRunConfig = R"([model]
name = "qwen3"
flavor = "30B-A3B-my-variant"

[training]
local_batch_size = 4
seq_len = 12288
steps = 20

[parallelism]
expert_parallel_degree = 8
)";

TEST(Ingest, AHandRunWithAnUnknownFlavorRanksAndReingestingIsANoOp) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"--space", s.space}, dir.path()).exit_code, 0);
  const std::string config = dir.file("hand_run.toml");
  write_file(config, kHandRunConfig);
  const std::string log = kFixtures + "/logs/torchtitan_v022_colored.log";
  const std::vector<std::string> args = {"ingest", "--db",           s.db, "--study", s.name, "--config",
                                         config,   "--warmup-steps", "2",  log};

  Result first = tune(args, dir.path());
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  EXPECT_NE(first.out.find("unknown flavor '30B-A3B-my-variant': noted"), std::string::npos) << first.out;

  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 5u);
  nlohmann::json ingested;
  for (const auto& t : list)
    if (t["source"] == "ingest") ingested = t;
  ASSERT_TRUE(ingested.is_object()) << list.dump();
  EXPECT_EQ(ingested["status"], "done");
  EXPECT_TRUE(ingested["failure"].is_null());
  EXPECT_EQ(ingested["config"]["parallelism.expert_parallel_degree"], 8);
  EXPECT_EQ(ingested["config"]["training.seq_len"], 12288);
  // Steps 10 and 20 are counted (warmup 2): medians of two.
  EXPECT_NEAR(ingested["metrics"]["mfu"].get<double>(), (29.90 + 30.15) / 2, 1e-9);
  EXPECT_NEAR(ingested["metrics"]["memory_gib"].get<double>(), 116.10, 1e-9);
  EXPECT_EQ(ingested["metrics"]["counted_steps"], 2);
  const std::string id = ingested["id"];

  Result shown = tune({"show", "--db", s.db, id}, dir.path());
  EXPECT_NE(shown.out.find("not in partune's flavor table"), std::string::npos) << shown.out;
  auto steps_before = query(s.db, "SELECT COUNT(*) FROM steps WHERE trial = '" + id + "'");
  EXPECT_EQ(steps_before, (std::vector<std::vector<std::string>>{{"3"}}));

  Result again = tune(args, dir.path());
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_NE(again.out.find("already ingested as trial " + id), std::string::npos) << again.out;
  EXPECT_EQ(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())), list);
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM steps WHERE trial = '" + id + "'"), steps_before);

  // ~30% MFU beats every fake trial: it ranks first and exports as the best.
  auto best = json_of(tune({"best", "--db", s.db, "--top", "0", "--format", "json"}, dir.path()));
  ASSERT_EQ(best.size(), 5u);
  EXPECT_EQ(best[0]["id"], id);
  Result exported = tune({"export", "--db", s.db, "--best"}, dir.path());
  ASSERT_EQ(exported.exit_code, 0) << exported.describe();
  EXPECT_EQ(JobConfig::from_toml_string(exported.out, "export"), JobConfig::from_toml_file(config)) << exported.out;
}

// Warm start: a hand run of a config the space plans, ingested with --space,
// takes that candidate's id, so the study counts it as measured and does not
// run it again; a second run of the same config is kept as an event.
TEST(Ingest, AHandRunOfAPlannedConfigWarmStartsTheStudy) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  Study s = write_space(dir, o);
  auto planned = json_of(tune({"plan", "--space", s.space, "--format", "json"}, dir.path()));
  std::string wanted;
  for (const auto& c : planned["candidates"])
    if (c["config"]["training.local_batch_size"] == 2 && c["config"]["activation_checkpoint.mode"] == "full")
      wanted = c["id"];
  ASSERT_FALSE(wanted.empty()) << planned.dump();

  // What a user runs by hand: the same job, with keys of its own (steps, dump folder)
  // and the implicit values left implicit (dp_shard -1, no global batch size).
  const std::string config = dir.file("hand.toml");
  write_file(config, R"([job]
dump_folder = "/tmp/hand-run"
[model]
name = "qwen3"
flavor = "debugmodel_moe"
[training]
local_batch_size = 2
steps = 20
[activation_checkpoint]
mode = "full"
)");
  const std::string log = kFixtures + "/logs/torchtitan_v022_colored.log";
  Result in = tune({"ingest", "--space", s.space, "--config", config, "--warmup-steps", "2", log}, dir.path());
  ASSERT_EQ(in.exit_code, 0) << in.describe();
  EXPECT_NE(in.out.find("trial " + wanted + " done (a planned candidate of the study: warm start)"), std::string::npos)
      << in.out;

  Result run = tune({"--space", s.space, "--plain"}, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  EXPECT_NE(run.out.find("4 candidates, 1 already finished, 3 to run"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("] " + wanted + " "), std::string::npos) << "the warm-started candidate ran again\n"
                                                                  << run.out;
  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 4u);  // no extra trial: the hand run is the candidate's result
  for (const auto& t : list) {
    if (t["id"] == wanted) {
      EXPECT_EQ(t["source"], "ingest");
    }
  }

  // The same config from another log: not a new trial, not a lost run.
  const std::string log2 = dir.file("again.log");
  write_file(log2, read_file(log));
  Result again = tune({"ingest", "--space", s.space, "--config", config, "--warmup-steps", "2", log2}, dir.path());
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_NE(again.out.find("already has a result"), std::string::npos) << again.out;
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM events WHERE kind = 'ingest_repeat' AND trial = '" + wanted + "'"),
            (std::vector<std::vector<std::string>>{{"1"}}));
}

}  // namespace
}  // namespace partune::cli_testing
