// [confirm]: the study's top k re-run on a production backend. Here the
// production "cluster" is fake_trainer with less device memory, where the
// study's best runs near the limit (unhealthy) and the second does not: both
// measurements are stored, and `best` / `export` rank by production.
#include <gtest/gtest.h>

#include <regex>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

TEST(Confirm, TopKAreRerunOnProductionAndBestRanksByIt) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  Study s = write_space(dir, o);  // grid over lbs {1, 2} x AC {none, full}, 80 GiB
  // Production: 13 GiB per device. lbs 2 without AC (12.1 GiB) is over the
  // 90% headroom there; lbs 2 with full AC (8.6 GiB) is not.
  std::string space = read_file(s.space);
  space += "\n[confirm]\nkind = \"command\"\nargv = [\"" + kFakeTrainer +
           "\", \"--config\", \"{config_file}\"]\nenv = { PARTUNE_FAKE_MEMORY_GIB = \"13\" }\ntop_k = 2\n";
  write_file(s.space, space);

  Result r = tune({"--space", s.space, "--plain"}, dir.path(), 60);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(count_lines_with(r.out, "production check of "), 2u) << r.out;

  auto list = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  std::string own_best, own_second;
  for (const auto& [id, t] : list) {
    if (t["config"]["training.local_batch_size"] != 2) continue;
    (t["config"]["activation_checkpoint.mode"] == "none" ? own_best : own_second) = id;
  }
  ASSERT_FALSE(own_best.empty());
  ASSERT_FALSE(own_second.empty());
  // The study's own measurement ranks lbs 2 / no AC first...
  EXPECT_GT(list[own_best]["metrics"]["mfu"].get<double>(), list[own_second]["metrics"]["mfu"].get<double>());
  // ...and it stays the trial's result, with production beside it.
  auto facts = [&](const std::string& id) {
    return nlohmann::json::parse(
        query(s.db, "SELECT facts_json FROM trials WHERE study = '" + s.name + "' AND id = '" + id + "'")[0][0]);
  };
  const auto best_prod = facts(own_best).at("production");
  const auto second_prod = facts(own_second).at("production");
  EXPECT_EQ(best_prod.at("backend"), "command");
  EXPECT_FALSE(best_prod.at("healthy").get<bool>()) << best_prod.dump();
  EXPECT_TRUE(second_prod.at("healthy").get<bool>()) << second_prod.dump();
  EXPECT_GT(best_prod.at("metrics").at("memory_pct").get<double>(), 90.0);
  EXPECT_EQ(list[own_best]["status"], "done");
  EXPECT_EQ(list[own_best]["healthy"], true);
  EXPECT_EQ(list[own_best]["attempt"], 2);  // the production run is its second attempt
  EXPECT_TRUE(fs::exists(s.results / ("confirm-" + own_best) / "output.log"));

  // best and export rank by production: the second is now first.
  auto best = json_of(tune({"best", "--db", s.db, "--format", "json", "--top", "1"}, dir.path()));
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0]["id"], own_second);
  Result exported = tune({"export", "--best", "--db", s.db, "--format", "json"}, dir.path());
  ASSERT_EQ(exported.exit_code, 0) << exported.describe();
  EXPECT_NE(exported.out.find("\"full\""), std::string::npos) << exported.out;

  // Running again measures nothing twice.
  Result again = tune({"--space", s.space, "--plain"}, dir.path(), 60);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(count_lines_with(again.out, "production check of "), 0u) << again.out;
}

// The summary's "tuner overhead" is tune's own time: the production runs of
// [confirm] (seconds each here, the study's trials a fraction of that) are
// trials' time, not overhead.
TEST(Confirm, ProductionRunsAreNotTunerOverhead) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  Study s = write_space(dir, o);
  std::string space = read_file(s.space);
  space += "\n[confirm]\nkind = \"command\"\nargv = [\"" + kFakeTrainer +
           "\", \"--config\", \"{config_file}\", \"--step-ms\", \"500\"]\ntop_k = 2\n";
  write_file(s.space, space);
  Result r = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(r.out, m, std::regex(R"(ran (\d+) trials in \S+ s \(tuner overhead (\S+) s per trial\))")))
      << r.out;
  ASSERT_EQ(m[1], "4") << r.out;  // 2 trials, 2 production runs
  const double overhead = std::stod(m[2]) * 4;
  double production = 0;
  for (const auto& row : query(s.db, "SELECT json_extract(facts_json, '$.production.wall_s') FROM trials"))
    if (!row.at(0).empty()) production += std::stod(row.at(0));
  ASSERT_GT(production, 5.0);  // 2 runs of 6 steps of 500 ms
  // Counted as overhead, the production runs alone would make it more than this.
  EXPECT_LT(overhead, production / 2) << r.out;
}

}  // namespace
}  // namespace partune::cli_testing
