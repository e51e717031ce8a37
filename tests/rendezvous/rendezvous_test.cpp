// The trainer's start-up under hostile launches, as real processes over Gloo:
// ranks that disagree on WORLD_SIZE fail at once; comm.init_timeout_seconds
// bounds rendezvous to first step once (a late rank does not buy a second
// one); --job.config_file must be given and name a regular file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/spawn_rank.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A model that starts in a second, with steps of seconds on a CPU: a step is
// never over before the test has looked.
constexpr const char* kConfig = R"([model]
name = "qwen3"
flavor = "tiny_moe"

[training]
local_batch_size = 4
seq_len = 1024
steps = 100000
dataset = "synthetic"

[metrics]
log_freq = 1

[comm]
train_timeout_seconds = 120
)";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/partune_rendezvous_XXXXXX";
    path_ = mkdtemp(tmpl);
    std::ofstream(path_ / "job.toml") << kConfig;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string config() const { return (path_ / "job.toml").string(); }

 private:
  fs::path path_;
};

struct Proc {
  pid_t pid = -1;
  fs::path log;
  bool finished = false;
  int status = 0;
  double seconds = 0;  // since the test's start, when it ended
  std::string output() const {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  bool exited_with(int code) const { return finished && WIFEXITED(status) && WEXITSTATUS(status) == code; }
};

Proc start(const TempDir& dir, const std::string& name, int rank, int world, int port,
           const std::vector<std::string>& args) {
  Proc p;
  p.log = dir.path() / (name + ".log");
  partune::testing::RankLaunch l;
  l.program = PARTUNE_TRAINER_BIN;
  l.args = args;
  l.rank = rank;
  l.world = world;
  l.port = port;
  l.rank_env = world > 0;
  l.extra_env = {"OMP_NUM_THREADS=1", "PARTUNE_DEVICE_TYPE=cpu",
                 "PARTUNE_METRICS_DIR=" + (dir.path() / "metrics").string()};
  l.log_path = p.log.string();
  std::string error;
  p.pid = partune::testing::spawn_rank(l, &error);
  if (p.pid < 0) ADD_FAILURE() << error;
  return p;
}

// Waits for every process until `deadline_s` after `t0`, then kills what runs.
void wait_all(std::vector<Proc*> procs, Clock::time_point t0, double deadline_s) {
  while (true) {
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    bool all = true;
    for (Proc* p : procs) {
      if (!p->finished && ::waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
        p->finished = true;
        p->seconds = t;
      }
      all = all && p->finished;
    }
    if (all) return;
    if (t > deadline_s) {
      for (Proc* p : procs)
        if (!p->finished) {
          ::kill(p->pid, SIGKILL);
          ::waitpid(p->pid, &p->status, 0);
          p->seconds = t;
        }
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string describe(const std::vector<Proc*>& procs) {
  std::ostringstream os;
  for (const Proc* p : procs) {
    os << p->log.filename() << ": ";
    if (!p->finished)
      os << "killed at the deadline";
    else if (WIFEXITED(p->status))
      os << "exit " << WEXITSTATUS(p->status);
    else
      os << "signal " << WTERMSIG(p->status);
    os << " after " << p->seconds << " s\n" << p->output() << "\n";
  }
  return os.str();
}

TEST(Rendezvous, RanksOfDifferentWorldsFailAtOnceNamingBoth) {
  TempDir dir;
  const int port = partune::testing::free_port();
  const std::vector<std::string> args = {"--job.config_file", dir.config(), "--comm.init_timeout_seconds", "60"};
  const auto t0 = Clock::now();
  Proc r0 = start(dir, "rank0", 0, 2, port, args);  // WORLD_SIZE=2
  Proc r1 = start(dir, "rank1", 1, 3, port, args);  // WORLD_SIZE=3
  wait_all({&r0, &r1}, t0, 20);
  for (Proc* p : {&r0, &r1}) {
    EXPECT_TRUE(p->exited_with(1)) << describe({&r0, &r1});
    EXPECT_LT(p->seconds, 20) << "not the 60 s init timeout";
    EXPECT_NE(p->output().find("trainer: error: rendezvous: "), std::string::npos) << describe({&r0, &r1});
  }
  // Rank 0 reads rank 1's size; rank 1 may find rank 0's store gone first.
  EXPECT_NE(r0.output().find("rank 1 has WORLD_SIZE 3, rank 0 has 2: the ranks were started for different worlds"),
            std::string::npos)
      << r0.output();
}

TEST(Rendezvous, MissingRankFailsAtTheInitTimeout) {
  TempDir dir;
  const auto t0 = Clock::now();
  Proc r0 = start(dir, "rank0", 0, 2, partune::testing::free_port(),
                  {"--job.config_file", dir.config(), "--comm.init_timeout_seconds", "4"});
  wait_all({&r0}, t0, 30);
  EXPECT_TRUE(r0.exited_with(1)) << describe({&r0});
  EXPECT_GE(r0.seconds, 3.5);
  EXPECT_LT(r0.seconds, 12);
  EXPECT_NE(r0.output().find("rank 1 of 2 did not join within comm.init_timeout_seconds (4 s)"), std::string::npos)
      << r0.output();
}

// Rank 1 comes 8 s late, within the 20 s budget, and hangs right after it
// has logged its start (in its first step). Rank 0's first step then has
// what the rendezvous left of the 20 s, not 20 s more: it ends about 20 s
// after its own start, well before 20 s after rank 1 hung.
TEST(Rendezvous, InitTimeoutIsSpentOnceFromRendezvousToFirstStep) {
  TempDir dir;
  const int port = partune::testing::free_port();
  const std::vector<std::string> args = {"--job.config_file", dir.config(), "--comm.init_timeout_seconds", "20"};
  const auto t0 = Clock::now();
  Proc r0 = start(dir, "rank0", 0, 2, port, args);
  std::this_thread::sleep_for(std::chrono::seconds(8));
  Proc r1 = start(dir, "rank1", 1, 2, port, args);
  const fs::path init = dir.path() / "metrics" / "metrics-rank1.jsonl";
  bool started = false;
  while (!started && Clock::now() - t0 < std::chrono::seconds(20)) {
    std::ifstream in(init);
    std::string line;
    while (std::getline(in, line)) started = started || line.find("\"type\":\"init\"") != std::string::npos;
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!started) wait_all({&r0, &r1}, t0, 0);
  ASSERT_TRUE(started) << describe({&r0, &r1});
  ::kill(r1.pid, SIGSTOP);
  const double stopped_s = std::chrono::duration<double>(Clock::now() - t0).count();
  wait_all({&r0}, t0, 90);
  ::kill(r1.pid, SIGKILL);
  wait_all({&r1}, t0, 90);
  EXPECT_TRUE(r0.exited_with(1)) << describe({&r0, &r1});
  // Spending the budget again from the first step would end it 20 s after the stop.
  EXPECT_LT(r0.seconds, stopped_s + 15) << "a second comm.init_timeout_seconds after the rendezvous (rank 1 stopped at "
                                        << stopped_s << " s)\n"
                                        << describe({&r0, &r1});
  EXPECT_NE(r0.output().find("comm.init_timeout_seconds"), std::string::npos) << r0.output();
}

TEST(ConfigFile, MissingFlagSaysSo) {
  TempDir dir;
  const auto t0 = Clock::now();
  Proc p = start(dir, "trainer", 0, 0, 0, {"--training.steps", "1"});
  wait_all({&p}, t0, 30);
  EXPECT_TRUE(p.exited_with(2)) << describe({&p});
  EXPECT_NE(p.output().find("--job.config_file FILE is required"), std::string::npos) << p.output();
}

TEST(ConfigFile, DirectoryOrFifoIsNotAConfig) {
  TempDir dir;
  const fs::path fifo = dir.path() / "job.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const auto& [path, kind] :
       {std::pair{dir.path().string(), std::string("a directory")}, std::pair{fifo.string(), std::string("a FIFO")}}) {
    const auto t0 = Clock::now();
    Proc p = start(dir, "trainer", 0, 0, 0, {"--job.config_file", path});
    wait_all({&p}, t0, 20);  // a FIFO must not be opened and waited on
    EXPECT_TRUE(p.exited_with(2)) << describe({&p});
    EXPECT_NE(p.output().find(path + ": not a regular file (" + kind + ")"), std::string::npos) << p.output();
  }
}

}  // namespace
