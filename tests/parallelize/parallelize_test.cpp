// The multi-process trainer is the one-process trainer, distributed: for each
// layout, `trainer` runs as WORLD processes (Gloo on the CPU, the product
// path: RANK/WORLD_SIZE/MASTER_* as torchrun sets them) and the loss and
// grad_norm of its first three steps must equal those of one process reading
// the same global batch (local batch size x data-parallel degree), to 1e-5
// relative in float32. Plus: a rank killed mid-run makes the others exit
// non-zero within the bound.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
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

// The base job: 3 steps of a partune test flavor, lr warmup of one step so
// that steps 2 and 3 see real updates, every step logged.
constexpr const char* kConfig = R"([model]
name = "qwen3"
flavor = "tiny_moe"

[training]
local_batch_size = 2
seq_len = 16
steps = 3
dataset = "synthetic"

[lr_scheduler]
warmup_steps = 1

[metrics]
log_freq = 1

[activation_checkpoint]
mode = "none"

[comm]
init_timeout_seconds = 60
train_timeout_seconds = 30
)";

using partune::testing::free_port;

using partune::testing::TempDir;
using Rank = partune::testing::TrainerProc;

// Starts `world` trainer processes (world 1: no rank variables at all).
std::vector<Rank> spawn_world(int world, const fs::path& dir, const std::vector<std::string>& args) {
  const int port = free_port();
  std::vector<Rank> ranks;
  for (int r = 0; r < world; ++r)
    ranks.push_back(
        partune::testing::start_trainer(dir, "rank" + std::to_string(r), r, world > 1 ? world : 0, port, args));
  return ranks;
}

std::vector<Rank*> pointers(std::vector<Rank>& ranks, const std::vector<int>& which = {}) {
  std::vector<Rank*> out;
  if (which.empty())
    for (auto& rk : ranks) out.push_back(&rk);
  for (int r : which) out.push_back(&ranks[r]);
  return out;
}

// Waits until every rank in `which` (empty: all) has finished or `deadline_s`
// passed (then kills all that still run). Returns whether all of `which` finished.
bool wait_ranks(std::vector<Rank>& ranks, Clock::time_point start, double deadline_s,
                const std::vector<int>& which = {}) {
  return partune::testing::wait_procs(pointers(ranks), start, deadline_s, pointers(ranks, which));
}

std::string describe(std::vector<Rank>& ranks) {
  const auto all = pointers(ranks);
  return partune::testing::describe({all.begin(), all.end()});
}

struct StepMetrics {
  double loss = 0, grad_norm = 0;
};

// Parameter elements each rank held (its shards), and the model's total;
// each rank's start-up and peak host memory by its first step.
struct ParamCounts {
  std::vector<int64_t> loss_parallel;  // per rank: the init record's "loss_parallel" (1 when absent)
  std::vector<int64_t> local;
  int64_t total = 0;
  std::vector<double> startup_s, host_peak_rss_gib;
};

// Runs the trainer on `world` ranks; returns rank 0's steps from its metrics file.
std::vector<StepMetrics> run_trainer(int world, const std::vector<std::string>& overrides,
                                     ParamCounts* counts = nullptr) {
  TempDir dir;
  { std::ofstream(dir.path() / "job.toml") << kConfig; }
  std::vector<std::string> args{"--job.config_file", (dir.path() / "job.toml").string()};
  args.insert(args.end(), overrides.begin(), overrides.end());
  auto ranks = spawn_world(world, dir.path(), args);
  const bool done = wait_ranks(ranks, Clock::now(), 120);
  std::vector<StepMetrics> out;
  for (const auto& rk : ranks)
    if (!done || !WIFEXITED(rk.status) || WEXITSTATUS(rk.status) != 0) {
      ADD_FAILURE() << "trainer failed:\n" << describe(ranks);
      return out;
    }
  for (int r = 0; r < world; ++r) {
    std::ifstream in(dir.path() / "metrics" / ("metrics-rank" + std::to_string(r) + ".jsonl"));
    std::string line;
    std::vector<StepMetrics> steps;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["type"] == "step") steps.push_back({j["loss"].get<double>(), j["grad_norm"].get<double>()});
      if (j["type"] == "init" && counts) {
        counts->local.push_back(j.value("local_params", int64_t{-1}));
        counts->total = j["params"].get<int64_t>();
        counts->startup_s.push_back(j.value("startup_s", -1.0));
        counts->host_peak_rss_gib.push_back(j.value("host_peak_rss_gib", -1.0));
        counts->loss_parallel.push_back(j.value("loss_parallel", int64_t{1}));
      }
    }
    // Every rank reports the same global loss and norm.
    if (r == 0) {
      out = steps;
    } else {
      EXPECT_EQ(steps.size(), out.size()) << "rank " << r;
      for (size_t i = 0; i < std::min(steps.size(), out.size()); ++i) {
        EXPECT_EQ(steps[i].loss, out[i].loss) << "rank " << r << " step " << i + 1;
        EXPECT_EQ(steps[i].grad_norm, out[i].grad_norm) << "rank " << r << " step " << i + 1;
      }
    }
  }
  return out;
}

void expect_rel(double got, double want, const std::string& what) {
  EXPECT_LE(std::abs(got - want), 1e-5 * std::abs(want)) << what << ": got " << got << " want " << want;
}

struct Layout {
  const char* name;
  int world;
  const char* flavor;
  int dp;                                // dp_replicate * dp_shard: the one-process run reads lbs * dp rows
  std::vector<std::string> parallelism;  // "key=value" under [parallelism]
  std::vector<std::string> extra = {};   // other overrides
  // Overrides of the parallel run only: the compiled memory mode and per-op
  // AC against the eager, un-checkpointed one process.
  std::vector<std::string> parallel_only = {};
};

const Layout kLayouts[] = {
    // world 2
    {"dp_shard2", 2, "tiny_moe", 2, {"data_parallel_shard_degree=2"}},
    {"dp_replicate2", 2, "tiny_moe", 2, {"data_parallel_replicate_degree=2", "data_parallel_shard_degree=1"}},
    {"tp2_dense", 2, "tiny", 1, {"tensor_parallel_degree=2", "data_parallel_shard_degree=1"}},
    {"tp2_moe_ep1", 2, "tiny_moe", 1, {"tensor_parallel_degree=2", "data_parallel_shard_degree=1"}},
    {"ep2_etp1", 2, "tiny_moe", 2, {"data_parallel_shard_degree=2", "expert_parallel_degree=2"}},
    {"tp2_ep2_etp1",
     2,
     "tiny_moe",
     1,
     {"tensor_parallel_degree=2", "data_parallel_shard_degree=1", "expert_parallel_degree=2"}},
    {"dp_shard2_full_ac", 2, "tiny_moe", 2, {"data_parallel_shard_degree=2"}, {"--activation_checkpoint.mode", "full"}},
    // fused output + loss and fused elementwise under FSDP (the output weight gathered around the
    // forward) and TP (replicated output): in chunks of 5 of each rank's 32 tokens (a ragged last
    // chunk), and with per-op selective AC in the default one chunk
    {"dp_shard2_compiled",
     2,
     "tiny_moe",
     2,
     {"data_parallel_shard_degree=2"},
     {},
     {"--compile.enable", "--loss-chunk-tokens", "5"}},
    {"tp2_dense_compiled",
     2,
     "tiny",
     1,
     {"tensor_parallel_degree=2", "data_parallel_shard_degree=1"},
     {},
     {"--compile.enable", "--loss-chunk-tokens", "5"}},
    {"dp_shard2_compiled_op_ac",
     2,
     "tiny_moe",
     2,
     {"data_parallel_shard_degree=2"},
     {},
     {"--compile.enable", "--activation_checkpoint.mode", "selective", "--activation_checkpoint.selective_ac_option",
      "op"}},
    // loss parallel turned off: the replicated output and logits under TP
    {"tp2_dense_compiled_no_loss_parallel",
     2,
     "tiny",
     1,
     {"tensor_parallel_degree=2", "data_parallel_shard_degree=1"},
     {},
     {"--compile.enable", "--parallelism.disable_loss_parallel"}},
    {"tp2_ep2_compiled_op_ac",
     2,
     "tiny_moe",
     1,
     {"tensor_parallel_degree=2", "data_parallel_shard_degree=1", "expert_parallel_degree=2"},
     {},
     {"--compile.enable", "--activation_checkpoint.mode", "selective", "--activation_checkpoint.selective_ac_option",
      "op"}},
    // world 4
    {"dp_shard4_ep4", 4, "tiny_moe", 4, {"data_parallel_shard_degree=4", "expert_parallel_degree=4"}},
    {"dp_shard2_tp2_dense", 4, "tiny", 2, {"data_parallel_shard_degree=2", "tensor_parallel_degree=2"}},
    {"dp_shard2_tp2_ep2_etp2",
     4,
     "tiny_moe",
     2,
     {"data_parallel_shard_degree=2", "tensor_parallel_degree=2", "expert_parallel_degree=2",
      "expert_tensor_parallel_degree=2"}},
    {"dp_shard2_tp2_ep4_etp1",
     4,
     "tiny_moe",
     2,
     {"data_parallel_shard_degree=2", "tensor_parallel_degree=2", "expert_parallel_degree=4"}},
    // loss parallel under FSDP: the output's vocabulary rows over TP, then flat shards over dp_shard
    {"dp_shard2_tp2_dense_compiled",
     4,
     "tiny",
     2,
     {"data_parallel_shard_degree=2", "tensor_parallel_degree=2"},
     {},
     {"--compile.enable"}},
    {"dp_replicate2_dp_shard2_ep2",
     4,
     "tiny_moe",
     4,
     {"data_parallel_replicate_degree=2", "data_parallel_shard_degree=2", "expert_parallel_degree=2"}},
    {"dp_shard2_tp2_ep4_selective_ac_never_reshard",
     4,
     "tiny_moe",
     2,
     {"data_parallel_shard_degree=2", "tensor_parallel_degree=2", "expert_parallel_degree=4",
      "fsdp_reshard_after_forward=never"},
     {"--activation_checkpoint.mode", "selective", "--activation_checkpoint.selective_ac_option", "2"}},
    {"dp_replicate2_tp2_ep2_etp1",
     4,
     "tiny_moe",
     2,
     {"data_parallel_replicate_degree=2", "data_parallel_shard_degree=1", "tensor_parallel_degree=2",
      "expert_parallel_degree=2"}},
    {"dp_shard4_ep2_grad_accum",
     4,
     "tiny_moe",
     4,
     {"data_parallel_shard_degree=4", "expert_parallel_degree=2"},
     {"--training.global_batch_size", "16"}},
};

class ParallelLayout : public ::testing::TestWithParam<Layout> {};

TEST_P(ParallelLayout, FirstStepsMatchOneProcess) {
  const Layout& l = GetParam();
  std::vector<std::string> common{"--model.flavor", l.flavor};
  common.insert(common.end(), l.extra.begin(), l.extra.end());
  std::vector<std::string> one = common;
  one.insert(one.end(), {"--training.local_batch_size", std::to_string(2 * l.dp)});
  std::vector<std::string> par = common;
  for (const auto& kv : l.parallelism) {
    const auto eq = kv.find('=');
    par.push_back("--parallelism." + kv.substr(0, eq));
    par.push_back(kv.substr(eq + 1));
  }
  par.insert(par.end(), l.parallel_only.begin(), l.parallel_only.end());
  ParamCounts one_counts, par_counts;
  const auto want = run_trainer(1, one, &one_counts);
  const auto got = run_trainer(l.world, par, &par_counts);
  // The passes really ran: one process holds the whole model; a layout that
  // shards (dp_shard, TP or EP > 1) leaves every rank a part of it.
  bool shards = false;
  for (const auto& kv : l.parallelism)
    for (const char* key : {"data_parallel_shard_degree=", "tensor_parallel_degree=", "expert_parallel_degree="})
      shards = shards || (kv.rfind(key, 0) == 0 && kv.substr(std::strlen(key)) != "1");
  ASSERT_EQ(one_counts.local, std::vector<int64_t>{one_counts.total});
  ASSERT_EQ(par_counts.local.size(), static_cast<size_t>(l.world));
  for (int64_t n : par_counts.local) {
    if (shards)
      EXPECT_LT(n, par_counts.total);
    else
      EXPECT_EQ(n, par_counts.total);
  }
  // Loss parallel ran where it applies: TP > 1 with the fused loss (the
  // compiled mode), unless turned off.
  bool tp = false, compiled = false, off = false;
  for (const auto& kv : l.parallelism)
    tp = tp || (kv.rfind("tensor_parallel_degree=", 0) == 0 && kv != "tensor_parallel_degree=1");
  for (const auto& a : l.parallel_only) {
    compiled = compiled || a == "--compile.enable";
    off = off || a == "--parallelism.disable_loss_parallel";
  }
  for (int64_t n : par_counts.loss_parallel) EXPECT_EQ(n > 1, tp && compiled && !off) << "loss_parallel " << n;
  ASSERT_EQ(want.size(), 3u);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    expect_rel(got[i].loss, want[i].loss, "step " + std::to_string(i + 1) + " loss");
    expect_rel(got[i].grad_norm, want[i].grad_norm, "step " + std::to_string(i + 1) + " grad_norm");
  }
}

INSTANTIATE_TEST_SUITE_P(Gloo, ParallelLayout, ::testing::ValuesIn(kLayouts),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ParallelLayout, RunsAreDeterministic) {
  const std::vector<std::string> args{"--parallelism.data_parallel_shard_degree", "2",
                                      "--parallelism.tensor_parallel_degree",     "2",
                                      "--parallelism.expert_parallel_degree",     "4"};
  const auto a = run_trainer(4, args), b = run_trainer(4, args);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].loss, b[i].loss);
    EXPECT_EQ(a[i].grad_norm, b[i].grad_norm);
  }
}

// Sharded at birth: a rank of dp_shard 2 never holds more than its half of
// any parameter, so its peak host memory by the first step (weights and
// AdamW moments, most of this flavor's memory: ~113 M parameters) is well
// under one process's. Holding the full model at any time would put it at
// or above world 1's.
TEST(ParallelMemory, DpShard2PeakHostMemoryIsAtMost60PercentOfOneProcess) {
  const std::vector<std::string> common{"--model.flavor",
                                        "debugmodel_moe-L3",
                                        "--training.local_batch_size",
                                        "1",
                                        "--training.steps",
                                        "1",
                                        "--activation_checkpoint.mode",
                                        "none"};
  std::vector<std::string> sharded = common;
  sharded.insert(sharded.end(), {"--parallelism.data_parallel_shard_degree", "2"});
  ParamCounts one, two;
  run_trainer(1, common, &one);
  run_trainer(2, sharded, &two);
  ASSERT_EQ(one.host_peak_rss_gib.size(), 1u);
  ASSERT_EQ(two.host_peak_rss_gib.size(), 2u);
  EXPECT_GT(one.host_peak_rss_gib[0], 1.0);  // the parameters dominate: 3 x 0.45 GB of weights and moments
  for (int r = 0; r < 2; ++r) {
    EXPECT_LE(two.host_peak_rss_gib[r], 0.6 * one.host_peak_rss_gib[0])
        << "rank " << r << ": " << two.host_peak_rss_gib[r] << " GiB vs one process " << one.host_peak_rss_gib[0];
    EXPECT_GT(two.startup_s[r], 0.0);
  }
  EXPECT_GT(one.startup_s[0], 0.0);
}

TEST(ParallelConfig, ContextParallelIsAClearError) {
  TempDir dir;
  std::ofstream(dir.path() / "job.toml") << kConfig;
  auto ranks =
      spawn_world(2, dir.path(),
                  {"--job.config_file", (dir.path() / "job.toml").string(), "--parallelism.context_parallel_degree",
                   "2", "--parallelism.data_parallel_shard_degree", "1"});
  ASSERT_TRUE(wait_ranks(ranks, Clock::now(), 30)) << describe(ranks);
  for (const auto& rk : ranks) {
    EXPECT_TRUE(WIFEXITED(rk.status) && WEXITSTATUS(rk.status) == 2) << describe(ranks);
    EXPECT_NE(rk.output().find("context parallelism is not implemented yet"), std::string::npos) << describe(ranks);
  }
}

// Starts a 4-rank run and, once rank 0 has logged a step, sends `signal` to
// the last rank. The others must exit 1, each with "trainer: rank N failed",
// within `bound_s`, never hang.
void expect_peers_fail_after(int signal, double bound_s) {
  TempDir dir;
  std::ofstream(dir.path() / "job.toml") << kConfig;
  const int world = 4;
  auto ranks = spawn_world(world, dir.path(),
                           {"--job.config_file", (dir.path() / "job.toml").string(), "--training.steps", "100000",
                            "--parallelism.data_parallel_shard_degree", "2", "--parallelism.tensor_parallel_degree",
                            "2", "--parallelism.expert_parallel_degree", "4", "--comm.train_timeout_seconds", "5"});
  const auto metrics = dir.path() / "metrics" / "metrics-rank0.jsonl";
  const auto t0 = Clock::now();
  bool stepping = false;
  while (!stepping && Clock::now() - t0 < std::chrono::seconds(60)) {
    std::ifstream in(metrics);
    std::string line;
    while (std::getline(in, line)) stepping = stepping || line.find("\"type\":\"step\"") != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const int victim = world - 1;
  if (!stepping) {
    wait_ranks(ranks, Clock::now(), 0);
    FAIL() << "no step logged within 60 s\n" << describe(ranks);
  }
  kill(ranks[victim].pid, signal);
  const auto sent = Clock::now();
  wait_ranks(ranks, sent, bound_s, {0, 1, 2});
  if (!ranks[victim].finished) {  // a stopped rank never exits by itself
    kill(ranks[victim].pid, SIGKILL);
    waitpid(ranks[victim].pid, &ranks[victim].status, 0);
  }
  for (int r = 0; r < victim; ++r) {
    EXPECT_TRUE(ranks[r].finished) << describe(ranks);
    EXPECT_TRUE(WIFEXITED(ranks[r].status) && WEXITSTATUS(ranks[r].status) == 1) << describe(ranks);
    EXPECT_LT(ranks[r].seconds, bound_s) << describe(ranks);
    EXPECT_NE(ranks[r].output().find("trainer: rank " + std::to_string(r) + " failed: "), std::string::npos)
        << describe(ranks);
  }
}

// A killed rank: its peers see the broken connections.
TEST(ParallelFailure, KilledRankMakesOthersExit) { expect_peers_fail_after(SIGKILL, 20); }

// A stopped rank (hung, connections open): its peers' watchdogs end them
// after comm.train_timeout_seconds (5 s here), long before the collectives'
// own timeout (comm.init_timeout_seconds, 60 s).
TEST(ParallelFailure, HungRankMakesOthersExitByWatchdog) { expect_peers_fail_after(SIGSTOP, 20); }

}  // namespace
