// The emulated rank (trainer --emulate-world N --emulate-rank R) holds what
// the real rank R of a world of N holds: for each layout, a real world of
// Gloo ranks (with --balanced-routing, the routing the emulated rank forces)
// and each of its ranks emulated alone must keep the same bytes from the
// start of the forward to the loss, counted exactly by the counting CPU
// allocator (PARTUNE_CPU_MEMORY=allocated). Exactly but for one thing: Gloo
// hands a finished collective back before its worker thread drops the
// work's tensors, so when the count is read the real rank may still hold
// (or free a moment late) the buffers of its last collectives: up to one
// all-to-all's input and output, where a rank keeps over a MiB. The emulated rank (and
// NCCL) have no such thread. And the emulated run must say
// that it is one, on its step lines and in its metrics records, so its
// losses are never mistaken for a real run's.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/spawn_rank.h"
#include "tests/support/temp_dir.h"
#include "tests/support/trainer_procs.h"

namespace {

namespace fs = std::filesystem;
using partune::testing::TempDir;
using partune::testing::TrainerProc;

constexpr const char* kConfig = R"([model]
name = "qwen3"
flavor = "tiny_moe"

[training]
local_batch_size = 4
seq_len = 64
steps = 2
dataset = "synthetic"

[metrics]
log_freq = 1

[activation_checkpoint]
mode = "selective"
selective_ac_option = "op"

[comm]
init_timeout_seconds = 60
train_timeout_seconds = 30
)";

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// The most a real Gloo rank's last collectives may still hold (see the top):
// the largest collective of a forward is an MoE all-to-all, its input and
// output each lbs x seq_len x top_k rows of tiny_moe's 32 fp32 values
// (128 KiB in all; seen whole in a loaded run), plus 32 KiB of smaller ones.
constexpr double kGloosInFlightBytes = 2.0 * (4 * 64 * 2) * 32 * 4 + 32 * 1024;

struct Layout {
  std::string name;
  int world;
  std::vector<std::string> args;
};

// World 0: no rank variables (the emulated run). Each run has its own
// metrics folder and counts its CPU memory exactly.
TrainerProc start(const fs::path& dir, const std::string& name, int rank, int world, int port,
                  const std::vector<std::string>& args) {
  return partune::testing::start_trainer(
      dir, name, rank, world, port, args,
      {"PARTUNE_CPU_MEMORY=allocated", "PARTUNE_METRICS_DIR=" + (dir / ("metrics-" + name)).string()});
}

// The JSON records of one run's rank `rank`.
std::vector<nlohmann::json> records(const fs::path& dir, const std::string& name, int rank) {
  std::ifstream in(dir / ("metrics-" + name) / ("metrics-rank" + std::to_string(rank) + ".jsonl"));
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<double> saved_gib(const std::vector<nlohmann::json>& recs) {
  std::vector<double> out;
  for (const auto& r : recs)
    if (r.at("type") == "step") out.push_back(r.at("saved_gib").get<double>());
  return out;
}

class EmulatedRank : public ::testing::TestWithParam<Layout> {};

TEST_P(EmulatedRank, KeepsWhatTheRealRankKeeps) {
  const Layout& layout = GetParam();
  TempDir tmp("emulated");
  const fs::path dir = tmp.path();
  const fs::path config = dir / "job.toml";
  std::ofstream(config) << kConfig;
  std::vector<std::string> args = {"--job.config_file", config.string()};
  args.insert(args.end(), layout.args.begin(), layout.args.end());

  // The real world, balanced routing.
  std::vector<std::string> real_args = args;
  real_args.push_back("--balanced-routing");
  const int port = partune::testing::free_port();
  std::vector<TrainerProc> real;
  for (int r = 0; r < layout.world; ++r)
    real.push_back(start(dir, "real" + std::to_string(r), r, layout.world, port, real_args));
  // Each rank emulated alone.
  std::vector<TrainerProc> emulated;
  for (int r = 0; r < layout.world; ++r) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--emulate-world", std::to_string(layout.world), "--emulate-rank", std::to_string(r)});
    emulated.push_back(start(dir, "emulated" + std::to_string(r), 0, 0, 0, a));
  }
  std::vector<TrainerProc*> all;
  for (auto& p : real) all.push_back(&p);
  for (auto& p : emulated) all.push_back(&p);
  ASSERT_TRUE(partune::testing::wait_procs(all, std::chrono::steady_clock::now(), 120));
  for (const TrainerProc* p : all) ASSERT_TRUE(p->exited_with(0)) << p->log << ":\n" << p->output();

  for (int r = 0; r < layout.world; ++r) {
    // Every process has its own metrics folder; rank r writes metrics-rank<r>.jsonl.
    const auto real_recs = records(dir, "real" + std::to_string(r), r);
    const auto emu_recs = records(dir, "emulated" + std::to_string(r), r);
    const auto want = saved_gib(real_recs), got = saved_gib(emu_recs);
    ASSERT_EQ(want.size(), 2u) << layout.name << " rank " << r;
    ASSERT_EQ(got.size(), 2u) << layout.name << " rank " << r;
    for (size_t i = 0; i < want.size(); ++i) {
      const double got_bytes = got[i] * kGiB, want_bytes = want[i] * kGiB;
      std::printf("%s rank %d step %zu: emulated %.0f bytes, real %.0f\n", layout.name.c_str(), r, i + 1, got_bytes,
                  want_bytes);
      EXPECT_GT(want_bytes, 3 * kGloosInFlightBytes) << layout.name << " rank " << r;
      EXPECT_NEAR(got_bytes, want_bytes, kGloosInFlightBytes)
          << layout.name << " rank " << r << " step " << i + 1 << ": emulated keeps " << got_bytes
          << " bytes, the real rank " << want_bytes;
    }
    // The emulated run says so; the real one does not.
    for (const auto& rec : emu_recs) {
      if (rec.at("type") == "step" || rec.at("type") == "init") {
        EXPECT_EQ(rec.value("emulated", false), true) << rec.dump();
      }
    }
    for (const auto& rec : real_recs) EXPECT_FALSE(rec.contains("emulated")) << rec.dump();
    const std::string out = emulated[r].output();
    EXPECT_NE(out.find("Emulated rank " + std::to_string(r) + " of " + std::to_string(layout.world)), std::string::npos)
        << out;
    size_t steps = 0;
    for (size_t at = out.find("step: "); at != std::string::npos; at = out.find("step: ", at + 1)) {
      const std::string line = out.substr(at, out.find('\n', at) - at);
      EXPECT_NE(line.find("  emulated: " + std::to_string(r) + "/" + std::to_string(layout.world)), std::string::npos)
          << line;
      ++steps;
    }
    EXPECT_EQ(steps, 2u) << out;
  }
  EXPECT_EQ(real[0].output().find("emulated"), std::string::npos) << real[0].output();
}

INSTANTIATE_TEST_SUITE_P(Layouts, EmulatedRank,
                         ::testing::Values(Layout{"fsdp", 2, {"--parallelism.data_parallel_shard_degree", "2"}},
                                           Layout{"tp", 2, {"--parallelism.tensor_parallel_degree", "2"}},
                                           Layout{"ep", 2, {"--parallelism.expert_parallel_degree", "2"}},
                                           Layout{"etp",
                                                  4,
                                                  {"--parallelism.tensor_parallel_degree", "2",
                                                   "--parallelism.expert_parallel_degree", "2",
                                                   "--parallelism.expert_tensor_parallel_degree", "2"}},
                                           Layout{"fsdp_ac_none",
                                                  2,
                                                  {"--parallelism.data_parallel_shard_degree", "2",
                                                   "--activation_checkpoint.mode", "none"}}),
                         [](const ::testing::TestParamInfo<Layout>& info) { return info.param.name; });

}  // namespace
