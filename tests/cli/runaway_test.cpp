// Runaway descendants of a trial, through tune: a grandchild that left the
// trial's process group and cleared its environment (so neither the group
// kill nor the guard's environment sweep can see it) ends when its trial
// ends, and, where trials run in cgroups, when tune is killed with -9.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <thread>

#include "cli_testing.h"
#include "tests/support/process_gone.h"
#include "tuner/launch/containment.h"

namespace partune::cli_testing {
namespace {

using partune::testing::process_gone;

// Runaway pids in a trial's output.log.
std::vector<pid_t> runaways(const fs::path& log) {
  std::vector<pid_t> out;
  const std::string text = read_file(log.string());
  const std::regex re("runaway pid ([0-9]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back(std::stoi((*it)[1]));
  return out;
}

TEST(Runaway, GrandchildWithoutEnvironmentOrGroupEndsWithEachTrial) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--runaway-clearenv"};
  Study s = write_space(dir, o);  // 4 trials, each leaving one runaway
  Result run = tune({"--space", s.space}, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  size_t seen = 0;
  for (const auto& row : query(s.db, "SELECT id FROM trials")) {
    for (pid_t pid : runaways(s.trial_dir(row[0]) / "output.log")) {
      ++seen;
      EXPECT_TRUE(process_gone(pid, 1)) << "runaway " << pid << " of trial " << row[0] << " outlived tune";
    }
  }
  EXPECT_EQ(seen, 4u);
}

TEST(Runaway, GrandchildWithoutEnvironmentEndsWhenTuneIsKilled) {
  if (Containment::create()->kind() != Containment::Kind::Cgroup)
    GTEST_SKIP() << "no writable cgroup v2 here: after kill -9 of tune only the cgroup finds such a process";
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--runaway-clearenv", "--hang-after", "1"};
  o.axes = "\"training.local_batch_size\" = [1]\n";
  Study s = write_space(dir, o);
  Process first({"--space", s.space}, dir.path());
  ASSERT_TRUE(
      first.wait_for_output([](const std::string& out) { return out.find("step 1/6") != std::string::npos; }, 15))
      << first.finish(1).describe();
  const auto id = query(s.db, "SELECT id FROM trials")[0][0];
  const auto pids = runaways(s.trial_dir(id) / "output.log");
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_FALSE(process_gone(pids[0], 0));
  first.kill(SIGKILL);
  first.finish(5);
  EXPECT_TRUE(process_gone(pids[0], 3)) << "runaway " << pids[0] << " outlived a killed tune";
}

}  // namespace
}  // namespace partune::cli_testing
