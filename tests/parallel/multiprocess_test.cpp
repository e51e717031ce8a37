// Real processes, real Gloo: spawns parallel_worker once per rank (posix_spawn,
// no shell) on a free port and checks every rank's exit status.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/spawn_rank.h"

namespace {

using Clock = std::chrono::steady_clock;

using partune::testing::free_port;

struct RankResult {
  bool finished = false;  // false: still running at the deadline (then killed)
  bool exited = false;
  int code = -1;
  int signal = 0;
  double seconds = 0;
  std::string output;  // stdout + stderr
};

std::string describe(const std::vector<RankResult>& rs) {
  std::ostringstream os;
  for (size_t r = 0; r < rs.size(); ++r) {
    os << "rank " << r << ": ";
    if (!rs[r].finished)
      os << "still running at the deadline";
    else if (rs[r].exited)
      os << "exit " << rs[r].code;
    else
      os << "signal " << rs[r].signal;
    os << " after " << rs[r].seconds << " s\n" << rs[r].output << "\n";
  }
  return os.str();
}

// Runs `world` workers with `args`; waits up to `deadline_s` for all of them,
// or only for ranks below `must_finish` (the rest are then killed).
std::vector<RankResult> run_world(int world, const std::vector<std::string>& args, double deadline_s,
                                  int timeout_s = 20, int must_finish = -1) {
  if (must_finish < 0) must_finish = world;
  const int port = free_port();
  std::vector<pid_t> pids(world);
  std::vector<std::string> logs(world);
  const auto start = Clock::now();
  for (int r = 0; r < world; ++r) {
    char tmpl[] = "/tmp/partune_parallel_XXXXXX";
    close(mkstemp(tmpl));
    logs[r] = tmpl;
    partune::testing::RankLaunch launch;
    launch.program = PARTUNE_PARALLEL_WORKER;
    launch.args = args;
    launch.rank = r;
    launch.world = world;
    launch.port = port;
    launch.extra_env = {"OMP_NUM_THREADS=1", "PARTUNE_TEST_TIMEOUT_S=" + std::to_string(timeout_s)};
    launch.log_path = logs[r];
    std::string error;
    pids[r] = partune::testing::spawn_rank(launch, &error);
    if (pids[r] < 0) ADD_FAILURE() << error;
  }

  std::vector<RankResult> out(world);
  int left = world;
  while (left > 0) {
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    for (int r = 0; r < world; ++r) {
      if (out[r].finished) continue;
      int status = 0;
      if (waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        out[r].finished = true;
        out[r].exited = WIFEXITED(status);
        out[r].code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        out[r].signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        out[r].seconds = t;
        --left;
      }
    }
    bool needed_done = true;
    for (int r = 0; r < must_finish; ++r) needed_done = needed_done && out[r].finished;
    if (left > 0 && (t > deadline_s || needed_done)) {
      for (int r = 0; r < world; ++r)
        if (!out[r].finished) {
          kill(pids[r], SIGKILL);
          waitpid(pids[r], nullptr, 0);
          out[r].seconds = t;
        }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int r = 0; r < world; ++r) {
    std::ifstream in(logs[r]);
    std::stringstream ss;
    ss << in.rdbuf();
    out[r].output = ss.str();
    std::remove(logs[r].c_str());
  }
  return out;
}

void expect_all_pass(int world, const std::vector<std::string>& args) {
  auto rs = run_world(world, args, 60);
  for (auto& r : rs) ASSERT_TRUE(r.finished && r.exited && r.code == 0) << describe(rs);
}

class World : public ::testing::TestWithParam<int> {};

TEST_P(World, CollectivesForwardAndBackwardMatchOneProcess) { expect_all_pass(GetParam(), {"collectives"}); }
TEST_P(World, AllToAllDispatcherMatchesLocalExperts) { expect_all_pass(GetParam(), {"dispatcher"}); }
TEST_P(World, TensorParallelHooksMatchOneProcess) { expect_all_pass(GetParam(), {"tensor_parallel"}); }

INSTANTIATE_TEST_SUITE_P(Gloo, World, ::testing::Values(2, 4),
                         [](const auto& info) { return "world" + std::to_string(info.param); });

// Layouts "dp_replicate,dp_shard,cp,tp,ep,etp", built one after another in one world.
TEST(MeshGroups, World2) { expect_all_pass(2, {"mesh_groups", "1,2,1,1,2,1", "1,1,1,2,2,1", "2,1,1,1,1,1"}); }
TEST(MeshGroups, World4) {
  expect_all_pass(4, {"mesh_groups", "1,2,1,2,4,1", "1,2,1,2,2,2", "1,2,1,2,2,1", "2,1,1,2,1,1", "1,4,1,1,2,1"});
}

// Every parameter's initial values equal world 1's with FSDP, TP, EP and
// ETP layouts ("FLAVOR:dp_replicate,dp_shard,cp,tp,ep,etp").
TEST(InitLayouts, World2) {
  expect_all_pass(2, {"init_layouts", "tiny_moe:1,2,1,1,1,1", "tiny:1,1,1,2,1,1", "tiny_moe:1,1,1,2,1,1",
                      "tiny_moe:1,2,1,1,2,1", "tiny_moe:1,1,1,2,2,1", "tiny_moe:2,1,1,1,1,1"});
}
TEST(InitLayouts, World4) {
  expect_all_pass(4, {"init_layouts", "tiny_moe:1,4,1,1,4,1", "tiny:1,2,1,2,1,1", "tiny_moe:1,2,1,2,2,2",
                      "tiny_moe:1,2,1,2,4,1", "tiny_moe:2,2,1,1,2,1", "tiny_moe:1,4,1,1,2,1"});
}

// The survivors must report and exit 1 well within the bound.
void expect_survivors_fail(const std::vector<RankResult>& rs, double bound_s) {
  const int victim = static_cast<int>(rs.size()) - 1;
  for (int r = 0; r < victim; ++r) {
    EXPECT_TRUE(rs[r].finished && rs[r].exited && rs[r].code == 1) << describe(rs);
    EXPECT_LT(rs[r].seconds, bound_s) << describe(rs);
    EXPECT_NE(rs[r].output.find("trainer: rank " + std::to_string(r) + " failed: "), std::string::npos) << describe(rs);
  }
}

TEST(Failure, KilledRankMakesOthersExit) {
  auto rs = run_world(4, {"kill"}, 30, /*timeout_s=*/5);
  EXPECT_EQ(rs[3].signal, SIGKILL) << describe(rs);
  expect_survivors_fail(rs, 30);
}

TEST(Failure, HungRankMakesOthersTimeOut) {
  // The stopped rank never exits by itself; run_world kills it once rank 0 is done.
  auto rs = run_world(2, {"hang"}, 20, /*timeout_s=*/3, /*must_finish=*/1);
  expect_survivors_fail(rs, 15);
}

}  // namespace
