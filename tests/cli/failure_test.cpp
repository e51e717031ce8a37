// A trial that hangs or runs too long is killed with everything it started,
// recorded as failed with its class and reason, and the study goes on.
#include <gtest/gtest.h>

#include <regex>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

struct Case {
  const char* name;
  std::vector<std::string> trainer_args;
  int steps;
  double timeout_s, hang_timeout_s;
  const char* failure;
  const char* reason;
};

// Test names in ctest, not bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Failure : public ::testing::TestWithParam<Case> {};

TEST_P(Failure, IsKilledWithItsChildrenAndRecorded) {
  const Case& c = GetParam();
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = c.trainer_args;
  o.trainer_args.push_back("--spawn-child");  // a grandchild that sleeps forever
  o.steps = c.steps;
  o.timeout_s = c.timeout_s;
  o.hang_timeout_s = c.hang_timeout_s;
  o.axes = "\"training.local_batch_size\" = [1]\n";
  Study s = write_space(dir, o);
  Result run = tune({"--space", s.space}, dir.path(), 15);
  ASSERT_EQ(run.exit_code, 4) << run.describe();  // every trial failed
  EXPECT_NE(run.out.find("0 done, 1 failed"), std::string::npos) << run.out;

  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 1u);
  const auto& t = list[0];
  EXPECT_EQ(t["status"], "failed");
  EXPECT_EQ(t["failure"], c.failure);
  EXPECT_NE(t.value("reason", "").find(c.reason), std::string::npos) << t.dump();

  // The trial, and the grandchild it started, are gone.
  std::smatch m;
  const std::string log = read_file((s.trial_dir(t["id"]) / "output.log").string());
  ASSERT_TRUE(std::regex_search(log, m, std::regex("child pid ([0-9]+)"))) << log;
  // It runs fake_trainer's command line (fork without exec), so it is found by the folder.
  const auto left = live_processes_with(dir.path().string(), 2);
  EXPECT_TRUE(left.empty()) << left.size() << " process(es) left, grandchild " << m[1];
}

INSTANTIATE_TEST_SUITE_P(
    Cli, Failure,
    ::testing::Values(Case{"Hang", {"--hang-after", "2"}, 6, 20, 1, "hang", "no output for 1 s"},
                      Case{"Timeout", {"--step-ms", "100"}, 100, 1, 10, "timeout", "timed out after 1 s"}),
    [](const auto& info) { return std::string(info.param.name); });

// A Python traceback and exit 1 is an `error` (a `crash` is a signal; see docs/results-db.md).
TEST(Failure, ATrainerErrorIsRecordedWithItsExceptionAndTheStudyGoesOn) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--crash-after", "3"};
  Study s = write_space(dir, o);
  Result run = tune({"--space", s.space}, dir.path());
  ASSERT_EQ(run.exit_code, 4) << run.describe();  // every trial failed
  EXPECT_NE(run.out.find("0 done, 4 failed"), std::string::npos) << run.out;
  for (const auto& t : json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()))) {
    EXPECT_EQ(t["failure"], "error") << t.dump();
    EXPECT_NE(t.value("reason", "").find("fake trainer crashed at step 3"), std::string::npos) << t.dump();
  }
  Result best = tune({"best", "--db", s.db}, dir.path());
  EXPECT_EQ(best.exit_code, 0) << best.describe();
  EXPECT_NE(best.err.find("no healthy finished trial"), std::string::npos) << best.err;
}

// A program that cannot start says why (it was a bare "exit code 127", the
// cause only in output.log).
TEST(Failure, AProgramThatCannotStartSaysWhy) {
  TempDir dir;
  SpaceOptions o;
  o.axes = "\"training.local_batch_size\" = [1]\n";
  Study s = write_space(dir, o);
  std::string text = read_file(s.space);
  text.replace(text.find(kFakeTrainer), kFakeTrainer.size(), "/nonexistent/partune-trainer");
  write_file(s.space, text);
  Result run = tune({"--space", s.space, "--plain"}, dir.path());
  EXPECT_EQ(run.exit_code, 4) << run.describe();
  const std::string why = "cannot execute /nonexistent/partune-trainer: No such file or directory";
  EXPECT_NE(run.out.find(why), std::string::npos) << run.out;
  const auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].value("reason", ""), why) << list.dump();
}

}  // namespace
}  // namespace partune::cli_testing
