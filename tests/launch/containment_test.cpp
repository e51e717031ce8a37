// Containment: descendants that leave the trial's process group (setsid) or
// also clear their environment end with the trial, both with a cgroup v2 per
// trial (where this host allows one) and with the subreaper + /proc walk
// (forced by PARTUNE_CONTAINMENT=subreaper, so it is tested on every host).
#include "tuner/launch/containment.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "tests/support/process_gone.h"
#include "tuner/launch/launcher.h"

namespace partune {
namespace {

using partune::testing::process_gone;

const std::string kTrainer = PARTUNE_FAKE_TRAINER;
const std::string kConfig = std::string(PARTUNE_FIXTURES_DIR) + "/configs/small.toml";

// The runaway's pid from fake_trainer's output.
struct RunawayRun {
  LaunchResult result;
  pid_t runaway = 0;
};

RunawayRun launch_with(const std::string& flag, const std::vector<std::string>& extra = {}) {
  ProcessSpec p;
  p.argv = {kTrainer, "--config", kConfig, flag};
  p.argv.insert(p.argv.end(), extra.begin(), extra.end());
  RunawayRun r;
  r.result = launch({p}, {}, [&](size_t, std::string_view line) {
    const std::string_view mark = "fake_trainer: runaway pid ";
    if (line.rfind(mark, 0) == 0) r.runaway = std::stoi(std::string(line.substr(mark.size())));
  });
  return r;
}

enum class Mode { Cgroup, Subreaper };

class ContainmentTest : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    if (GetParam() == Mode::Subreaper) {
      ::setenv("PARTUNE_CONTAINMENT", "subreaper", 1);
    } else {
      ::unsetenv("PARTUNE_CONTAINMENT");
      if (Containment::create()->kind() != Containment::Kind::Cgroup)
        GTEST_SKIP() << "no writable cgroup v2 on this host (the subreaper cases still run)";
    }
  }
  void TearDown() override {
    ::unsetenv("PARTUNE_CONTAINMENT");
    // Adopted orphans were reaped: this process has no child left.
    errno = 0;
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  }
  std::string mode() const { return GetParam() == Mode::Cgroup ? "cgroup" : "subreaper"; }
};

TEST_P(ContainmentTest, SetsidRunawayEndsWithItsTrial) {
  RunawayRun r = launch_with("--runaway-setsid");
  ASSERT_GT(r.runaway, 0);
  EXPECT_EQ(r.result.exit_codes[0], 0);
  EXPECT_EQ(r.result.containment, mode());
  EXPECT_TRUE(process_gone(r.runaway, 0.5)) << "runaway " << r.runaway << " outlived its trial";
  EXPECT_GE(r.result.escaped_killed, 1);
}

TEST_P(ContainmentTest, RunawayWithoutEnvironmentEndsWithItsTrial) {
  RunawayRun r = launch_with("--runaway-clearenv");
  ASSERT_GT(r.runaway, 0);
  EXPECT_TRUE(process_gone(r.runaway, 0.5)) << "runaway " << r.runaway << " outlived its trial";
  EXPECT_EQ(r.result.containment, mode());
}

TEST_P(ContainmentTest, RunawayOfAHungTrialEndsWithTheKill) {
  ProcessSpec p;
  p.argv = {kTrainer, "--config", kConfig, "--runaway-setsid", "--hang-after", "1"};
  LaunchOptions opts;
  opts.hang_timeout_s = 0.5;
  opts.kill_grace_s = 0.2;
  pid_t runaway = 0;
  auto res = launch({p}, opts, [&](size_t, std::string_view line) {
    const std::string_view mark = "fake_trainer: runaway pid ";
    if (line.rfind(mark, 0) == 0) runaway = std::stoi(std::string(line.substr(mark.size())));
  });
  EXPECT_TRUE(res.hung);
  ASSERT_GT(runaway, 0);
  EXPECT_TRUE(process_gone(runaway, 0.5));
}

TEST_P(ContainmentTest, WellBehavedTrialHasNothingToEnd) {
  ProcessSpec p;
  p.argv = {kTrainer, "--config", kConfig};
  auto res = launch({p}, {}, {});
  EXPECT_EQ(res.exit_codes[0], 0);
  EXPECT_EQ(res.escaped_killed, 0);
}

INSTANTIATE_TEST_SUITE_P(Launch, ContainmentTest, ::testing::Values(Mode::Cgroup, Mode::Subreaper),
                         [](const auto& info) { return info.param == Mode::Cgroup ? "Cgroup" : "Subreaper"; });

}  // namespace
}  // namespace partune
