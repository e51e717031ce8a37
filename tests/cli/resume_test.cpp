// Killing tune: kill -9 mid-trial takes the trial's processes with it, and the
// same command resumes the study without rerunning finished trials and
// without losing or duplicating a step row. A second tune on a running study
// refuses.
#include <gtest/gtest.h>
#include <signal.h>

#include "cli_testing.h"
#include "tuner/study/runner.h"

namespace partune::cli_testing {
namespace {

// Slow enough to kill mid-trial with a second to spare: 10 steps of 150 ms a trial.
SpaceOptions slow_study(const char* batch_sizes = "[1, 2, 4]") {
  SpaceOptions o;
  o.steps = 10;
  o.trainer_args = {"--step-ms", "150"};
  o.axes = std::string("\"training.local_batch_size\" = ") + batch_sizes + "\n";
  return o;
}

// Rows as "attempt:step", in order.
std::vector<std::string> step_rows(const Study& s, const std::string& id) {
  std::vector<std::string> out;
  for (const auto& r : query(s.db, "SELECT attempt, step FROM steps WHERE study = '" + s.name + "' AND trial = '" + id +
                                       "' ORDER BY attempt, step"))
    out.push_back(r[0] + ":" + r[1]);
  return out;
}

std::vector<std::string> expected_rows(int attempt, int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i) out.push_back(std::to_string(attempt) + ":" + std::to_string(i));
  return out;
}

TEST(Resume, KillNineMidTrialEndsTheTrialAndTheSameCommandFinishesTheStudy) {
  TempDir dir;
  SpaceOptions o = slow_study();
  o.trainer_args.push_back("--spawn-child");  // a grandchild, which no parent-death signal reaches
  Study s = write_space(dir, o);
  const std::string token = study_token(s.db, s.name);

  // Kill tune once the second trial has logged two steps.
  Process first({"--space", s.space}, dir.path());
  const bool mid_trial = first.wait_for_output(
      [](const std::string& out) {
        size_t second = out.find("[2/3]");
        return second != std::string::npos && out.find("step 2/10", second) != std::string::npos;
      },
      15);
  ASSERT_TRUE(mid_trial) << first.finish(1).describe();
  ASSERT_FALSE(live_processes_with(token).empty()) << "no trial process carries the study token";
  first.kill(SIGKILL);
  Result killed = first.finish(5);
  ASSERT_EQ(killed.signal, SIGKILL);

  // Its trial processes die with it (they would hold GPUs), grandchildren
  // included, without waiting for a rerun to sweep them.
  EXPECT_TRUE(live_processes_with(token, 5).empty());
  EXPECT_TRUE(live_processes_with(dir.path().string(), 5).empty());

  auto before = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  std::string done_id, interrupted_id;
  for (const auto& [id, t] : before) {
    if (t["status"] == "done") done_id = id;
    if (t["status"] == "running") interrupted_id = id;
  }
  ASSERT_FALSE(done_id.empty());
  ASSERT_FALSE(interrupted_id.empty());
  // Every step tune printed before it died is in the db.
  const auto interrupted_rows = step_rows(s, interrupted_id);
  ASSERT_GE(interrupted_rows.size(), 2u);
  EXPECT_EQ(interrupted_rows, expected_rows(1, 1, static_cast<int>(interrupted_rows.size())));
  EXPECT_GE(interrupted_rows.size(), count_lines_with(killed.out.substr(killed.out.find("[2/3]")), "  step "));

  Result resumed = tune({"--space", s.space}, dir.path());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_NE(resumed.out.find("1 already finished, 2 to run"), std::string::npos) << resumed.out;
  EXPECT_EQ(resumed.out.find("leftover"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("(attempt 2)"), std::string::npos) << resumed.out;
  EXPECT_EQ(count_lines_with(resumed.out, ": started"), 2u) << resumed.out;

  auto after = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  for (const auto& [id, t] : after) {
    EXPECT_EQ(t["status"], "done") << t.dump();
    EXPECT_EQ(t["attempt"], id == interrupted_id ? 2 : 1) << t.dump();
  }
  // The finished trial's rows are untouched, the interrupted attempt's rows
  // are kept, and the rerun has every step once.
  EXPECT_EQ(step_rows(s, done_id), expected_rows(1, 1, 10));
  auto rerun = expected_rows(1, 1, static_cast<int>(interrupted_rows.size()));
  for (const auto& r : expected_rows(2, 1, 10)) rerun.push_back(r);
  EXPECT_EQ(step_rows(s, interrupted_id), rerun);
  auto shown = json_of(tune({"show", "--db", s.db, interrupted_id, "--format", "json"}, dir.path()));
  EXPECT_EQ(shown["steps"].size(), 10u);
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM events WHERE kind = 'reset' AND trial = '" + interrupted_id + "'"),
            (std::vector<std::vector<std::string>>{{"1"}}));
  EXPECT_TRUE(live_processes_with(token).empty());
}

TEST(Resume, ASecondTuneOnARunningStudyExitsThreeNamingTheFirst) {
  TempDir dir;
  Study s = write_space(dir, slow_study("[1, 2]"));
  Process first({"--space", s.space}, dir.path());
  ASSERT_TRUE(
      first.wait_for_output([](const std::string& out) { return out.find("step 1/10") != std::string::npos; }, 15))
      << first.finish(1).describe();

  Result second = tune({"--space", s.space}, dir.path());
  EXPECT_EQ(second.exit_code, 3) << second.describe();
  EXPECT_NE(second.err.find("another tune"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(first.pid())), std::string::npos) << second.err;
  EXPECT_EQ(second.out.find("started"), std::string::npos) << "the second tune launched a trial:\n" << second.out;

  // The first is undisturbed and finishes; its trials ran once each.
  Result r = first.finish(20);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  for (const auto& [id, t] : trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()))))
    EXPECT_EQ(t["attempt"], 1) << t.dump();
}

}  // namespace
}  // namespace partune::cli_testing
