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

}  // namespace
}  // namespace partune::cli_testing
