// The trainer's start-up under hostile launches, as real processes over Gloo:
// ranks that disagree on WORLD_SIZE fail at once; comm.init_timeout_seconds
// bounds rendezvous to first step once (a late rank does not buy a second
// one); --job.config_file is optional (torchtitan's defaults) but a
// given one must name a regular file.
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
#include "tests/support/temp_dir.h"
#include "tests/support/trainer_procs.h"

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

using partune::testing::describe;
using partune::testing::start_trainer;
using partune::testing::wait_procs;
using Proc = partune::testing::TrainerProc;

// A test folder with the job config in it.
class TempDir : public partune::testing::TempDir {
 public:
  TempDir() : partune::testing::TempDir("partune-rendezvous") { std::ofstream(path() / "job.toml") << kConfig; }
  std::string config() const { return file("job.toml"); }
};

TEST(Rendezvous, RanksOfDifferentWorldsFailAtOnceNamingBoth) {
  TempDir dir;
  const int port = partune::testing::free_port();
  const std::vector<std::string> args = {"--job.config_file", dir.config(), "--comm.init_timeout_seconds", "60"};
  const auto t0 = Clock::now();
  Proc r0 = start_trainer(dir.path(), "rank0", 0, 2, port, args);  // WORLD_SIZE=2
  Proc r1 = start_trainer(dir.path(), "rank1", 1, 3, port, args);  // WORLD_SIZE=3
  wait_procs({&r0, &r1}, t0, 20);
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
  Proc r0 = start_trainer(dir.path(), "rank0", 0, 2, partune::testing::free_port(),
                          {"--job.config_file", dir.config(), "--comm.init_timeout_seconds", "4"});
  wait_procs({&r0}, t0, 30);
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
  Proc r0 = start_trainer(dir.path(), "rank0", 0, 2, port, args);
  std::this_thread::sleep_for(std::chrono::seconds(8));
  Proc r1 = start_trainer(dir.path(), "rank1", 1, 2, port, args);
  const fs::path init = dir.path() / "metrics" / "metrics-rank1.jsonl";
  bool started = false;
  while (!started && Clock::now() - t0 < std::chrono::seconds(20)) {
    std::ifstream in(init);
    std::string line;
    while (std::getline(in, line)) started = started || line.find("\"type\":\"init\"") != std::string::npos;
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!started) wait_procs({&r0, &r1}, t0, 0);
  ASSERT_TRUE(started) << describe({&r0, &r1});
  ::kill(r1.pid, SIGSTOP);
  const double stopped_s = std::chrono::duration<double>(Clock::now() - t0).count();
  wait_procs({&r0}, t0, 90);
  ::kill(r1.pid, SIGKILL);
  wait_procs({&r1}, t0, 90);
  EXPECT_TRUE(r0.exited_with(1)) << describe({&r0, &r1});
  // Spending the budget again from the first step would end it 20 s after the stop.
  EXPECT_LT(r0.seconds, stopped_s + 15) << "a second comm.init_timeout_seconds after the rendezvous (rank 1 stopped at "
                                        << stopped_s << " s)\n"
                                        << describe({&r0, &r1});
  EXPECT_NE(r0.output().find("comm.init_timeout_seconds"), std::string::npos) << r0.output();
}

// As torchtitan v0.2.2: without --job.config_file every key starts at
// torchtitan's default, and the command line alone trains.
TEST(ConfigFile, WithoutOneEveryKeyIsTorchtitansDefault) {
  TempDir dir;
  auto t0 = Clock::now();
  Proc dry = start_trainer(dir.path(), "dry", 0, 0, 0,
                           {"--model.name", "qwen3", "--model.flavor", "debugmodel_moe", "--dry-run"});
  wait_procs({&dry}, t0, 30);
  ASSERT_TRUE(dry.exited_with(0)) << describe({&dry});
  // torchtitan's defaults: local_batch_size 8, seq_len 2048, steps 10000.
  EXPECT_NE(dry.output().find("\"local_batch_size\":8,"), std::string::npos) << dry.output();
  EXPECT_NE(dry.output().find("\"seq_len\":2048,"), std::string::npos) << dry.output();
  EXPECT_NE(dry.output().find("\"steps\":10000"), std::string::npos) << dry.output();
  // A run (a smaller model and batch than the defaults, to take seconds).
  t0 = Clock::now();
  Proc run = start_trainer(
      dir.path(), "run", 0, 0, 0,
      {"--model.name", "qwen3", "--model.flavor", "tiny_moe", "--training.steps", "3", "--training.seq_len", "64",
       "--training.local_batch_size", "2", "--metrics.log_freq", "1", "--device", "cpu"});
  wait_procs({&run}, t0, 120);
  EXPECT_TRUE(run.exited_with(0)) << describe({&run});
  EXPECT_NE(run.output().find("step:  3"), std::string::npos) << run.output();
  // The model name alone is not left to the default (llama3): the error says which models there are.
  t0 = Clock::now();
  Proc llama = start_trainer(dir.path(), "llama", 0, 0, 0, {"--training.steps", "1"});
  wait_procs({&llama}, t0, 30);
  EXPECT_TRUE(llama.exited_with(2)) << describe({&llama});
  EXPECT_NE(llama.output().find("defaults: key 'model.name': 'llama3' is not a model of the embedded trainer"),
            std::string::npos)
      << llama.output();
}

TEST(ConfigFile, AGivenPathThatIsMissingSaysSo) {
  TempDir dir;
  const auto t0 = Clock::now();
  const std::string missing = (dir.path() / "no-such.toml").string();
  Proc p = start_trainer(dir.path(), "trainer", 0, 0, 0, {"--job.config_file", missing});
  wait_procs({&p}, t0, 30);
  EXPECT_TRUE(p.exited_with(2)) << describe({&p});
  EXPECT_NE(p.output().find(missing + ": cannot read file: No such file or directory"), std::string::npos)
      << p.output();
}

TEST(ConfigFile, DirectoryOrFifoIsNotAConfig) {
  TempDir dir;
  const fs::path fifo = dir.path() / "job.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const auto& [path, kind] :
       {std::pair{dir.path().string(), std::string("a directory")}, std::pair{fifo.string(), std::string("a FIFO")}}) {
    const auto t0 = Clock::now();
    Proc p = start_trainer(dir.path(), "trainer", 0, 0, 0, {"--job.config_file", path});
    wait_procs({&p}, t0, 20);  // a FIFO must not be opened and waited on
    EXPECT_TRUE(p.exited_with(2)) << describe({&p});
    EXPECT_NE(p.output().find(path + ": not a regular file (" + kind + ")"), std::string::npos) << p.output();
  }
}

}  // namespace
