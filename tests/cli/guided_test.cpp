// The default strategy end to end, as a user runs it: `tune --space F` with no
// [search] strategy runs guided (short trials, promotions, confirmation of
// the top results) on real processes, prints the study's status line in
// plain mode, and resumes after kill -9.
#include <gtest/gtest.h>
#include <signal.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

SpaceOptions guided_study() {
  SpaceOptions o;
  o.objective = "mfu";
  o.steps = 12;  // short trials: 2 warm-up + 3 counted steps
  o.warmup_steps = 2;
  o.search = "";  // no strategy: the default
  o.axes = R"("training.local_batch_size" = [1, 2, 4]
"activation_checkpoint.mode" = ["none", "full"]
)";
  return o;
}

std::map<std::string, nlohmann::json> search_facts(const Study& s) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& r : query(s.db, "SELECT id, facts_json FROM trials WHERE study = '" + s.name + "'")) {
    auto facts = nlohmann::json::parse(r[1]);
    if (facts.contains("search")) out[r[0]] = facts["search"];
  }
  return out;
}

TEST(Guided, IsTheDefaultAndRunsShortTrialsThenConfirmsTheBest) {
  TempDir dir;
  Study s = write_space(dir, guided_study());
  Result r = tune({"--space", s.space, "--plain"}, dir.path(), 60);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("short trial of "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("probe of the only layout"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("confirm trial of "), std::string::npos) << r.out;
  // The status line after every trial, in plain mode too.
  EXPECT_NE(r.out.find("study: elapsed "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("predicted to fit"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(", best mfu "), std::string::npos) << r.out;

  const auto facts = search_facts(s);
  int confirmed = 0, short_only = 0;
  for (const auto& [id, f] : facts) {
    if (f.at("runs").size() >= 2) {
      ++confirmed;
      EXPECT_TRUE(f.at("spread").is_number()) << f.dump();
    }
    if (f.at("runs").empty()) {
      ++short_only;
      EXPECT_EQ(f.at("fidelity"), "short") << f.dump();
      EXPECT_EQ(f.at("steps"), 5) << f.dump();
    }
  }
  EXPECT_GE(confirmed, 1);
  // `best` ranks a confirmed config first: its metrics are the mean of its runs.
  auto best = json_of(tune({"best", "--db", s.db, "--format", "json", "--top", "1"}, dir.path()));
  ASSERT_EQ(best.size(), 1u) << best.dump();
  const auto& f = facts.at(best[0]["id"].get<std::string>());
  EXPECT_GE(f.at("runs").size(), 2u) << f.dump();
  EXPECT_NEAR(best[0]["metrics"]["mfu"].get<double>(), f.at("mean").get<double>(), 1e-9);
  // Trials store their start-up time (process start to the first step).
  const auto startup = query(s.db, "SELECT startup_s FROM trials WHERE study = '" + s.name + "' AND id = '" +
                                       best[0]["id"].get<std::string>() + "'");
  ASSERT_EQ(startup.size(), 1u);
  EXPECT_FALSE(startup[0][0].empty());
}

// Early stopping on real processes: with 8 steps a trial (warm-up 2 + 3
// counted is more than half of it) runs in full at once, and a config whose
// counted steps are clearly below the best is ended by the launcher.
TEST(Guided, StopsAClearlyWorseTrialEarly) {
  TempDir dir;
  SpaceOptions o = guided_study();
  o.steps = 8;
  o.trainer_args = {"--step-ms", "100"};  // time for the stop to land before the trial ends
  o.axes = R"("training.local_batch_size" = [1, 2, 4]
"activation_checkpoint.mode" = ["none", "selective", "full"]
)";
  Study s = write_space(dir, o);
  Result r = tune({"--space", s.space, "--plain"}, dir.path(), 60);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_NE(r.out.find("(stopped early: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("clearly below the best"), std::string::npos) << r.out;
  int stopped = 0;
  for (const auto& [id, f] : search_facts(s)) {
    if (!f.contains("stopped_early")) continue;
    ++stopped;
    const auto rows = query(s.db, "SELECT count(*) FROM steps WHERE study = '" + s.name + "' AND trial = '" + id + "'");
    EXPECT_LT(std::stoi(rows[0][0]), 8) << id;  // it did not run to the end
    const auto status = query(s.db, "SELECT status FROM trials WHERE study = '" + s.name + "' AND id = '" + id + "'");
    EXPECT_EQ(status[0][0], "done");  // done on the steps it ran, not failed
  }
  EXPECT_GE(stopped, 1);
}

TEST(Guided, ResumesAfterKillNine) {
  TempDir dir;
  SpaceOptions o = guided_study();
  o.trainer_args = {"--step-ms", "100"};
  Study s = write_space(dir, o);
  Process first({"--space", s.space, "--plain"}, dir.path());
  const bool second_trial = first.wait_for_output(
      [](const std::string& out) {
        const size_t at = out.find("\n[3] ");
        return at != std::string::npos && out.find("step 1/", at) != std::string::npos;
      },
      20);
  ASSERT_TRUE(second_trial) << first.finish(1).describe();
  first.kill(SIGKILL);
  ASSERT_EQ(first.finish(5).signal, SIGKILL);

  Result resumed = tune({"--space", s.space, "--plain"}, dir.path(), 60);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_NE(resumed.out.find("1 already finished"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("confirm trial of "), std::string::npos) << resumed.out;
  EXPECT_TRUE(query(s.db, "SELECT id FROM trials WHERE status = 'running'").empty());
}

}  // namespace
}  // namespace partune::cli_testing
