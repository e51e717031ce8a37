// The seed's seven hand-tuned runs (Qwen3-30B-A3B, 48 layers, one node of
// 8 x H200; torchtitan v0.2.2, compiled, per-op selective AC, expandable
// segments; docs/memory-model.md lists them) as a plan over the seed's own
// problem: the memory model must predict what the seed measured, prune the
// two runs that thrashed at 96%, and keep the seed's winner.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/job_config.h"
#include "tuner/estimate/memory_model.h"
#include "tuner/plan/planner.h"
#include "tuner/space/space.h"

namespace partune {
namespace {

constexpr double kH200 = 139.8;
constexpr double kHeadroom = 0.90;

struct SeedRun {
  int n;
  int tp, ep, etp;
  int64_t lbs, seq;
  std::string ac;  // "full" or "op"
  bool compile;
  double measured_gib;
  bool thrashed;  // measured at 96% with allocation retries: its true demand is higher
};

const std::vector<SeedRun>& seed_runs() {
  static const std::vector<SeedRun> runs = {
      {1, 4, 2, 4, 2, 4096, "full", false, 63.4, false}, {2, 4, 2, 4, 12, 8192, "op", true, 116.8, false},
      {3, 4, 2, 4, 16, 8192, "op", true, 135.0, true},   {4, 1, 8, 1, 8, 8192, "op", true, 134.4, true},
      {5, 1, 8, 1, 6, 8192, "op", true, 115.4, false},   {6, 1, 4, 1, 6, 8192, "op", true, 116.5, false},
      {7, 1, 4, 1, 4, 12288, "op", true, 116.0, false},
  };
  return runs;
}

Space seed_space() {
  return load_space_from_string(
      "[study]\nname = \"seed\"\n[hardware]\ndevice_type = \"cuda\"\ndevices = 8\nmemory_gib = 139.8\n"
      "[backend]\nkind = \"embedded\"\n[base]\nconfig_file = \"examples/qwen3_30b_a3b.toml\"\n"
      "[space]\n\"training.seq_len\" = [4096]\n",
      std::string(PARTUNE_SOURCE_DIR) + "/space.toml");
}

JobConfig config_of(const SeedRun& r) {
  JobConfig c = JobConfig::from_toml_file(std::string(PARTUNE_SOURCE_DIR) + "/examples/qwen3_30b_a3b.toml");
  c.set("parallelism.tensor_parallel_degree", int64_t{r.tp});
  c.set("parallelism.expert_parallel_degree", int64_t{r.ep});
  c.set("parallelism.expert_tensor_parallel_degree", int64_t{r.etp});
  c.set("training.local_batch_size", r.lbs);
  c.set("training.seq_len", r.seq);
  if (r.ac == "full") {
    c.set("activation_checkpoint.mode", std::string("full"));
  } else {
    c.set("activation_checkpoint.mode", std::string("selective"));
    c.set("activation_checkpoint.selective_ac_option", std::string("op"));
  }
  c.set("compile.enable", r.compile);
  return c;
}

TEST(SeedRuns, PredictedWithinTenPercentAndTheThrashingRunsPruned) {
  auto model = make_memory_model(seed_space());
  for (const auto& r : seed_runs()) {
    const auto p = model->predict(config_of(r));
    ASSERT_TRUE(p.known) << "run " << r.n;
    std::printf("run %d  tp%d ep%d etp%d lbs%-2lld seq%-5lld %-4s %-7s measured %6.1f predicted %6.1f (%+5.1f%%)\n",
                r.n, r.tp, r.ep, r.etp, static_cast<long long>(r.lbs), static_cast<long long>(r.seq), r.ac.c_str(),
                r.compile ? "compile" : "eager", r.measured_gib, p.memory_gib,
                100 * (p.memory_gib / r.measured_gib - 1));
    std::printf(
        "       params %.1f grads %.1f optimizer %.1f activations %.1f logits %.1f transient %.1f overhead %.1f\n",
        p.terms.params, p.terms.grads, p.terms.optimizer, p.terms.activations, p.terms.logits, p.terms.transient,
        p.terms.overhead);
    if (r.thrashed) {
      // The allocator retried at 96%: the run asked for more than it got.
      EXPECT_GT(p.memory_gib, kHeadroom * kH200) << "run " << r.n;
    } else {
      EXPECT_LE(std::abs(p.memory_gib / r.measured_gib - 1), 0.10) << "run " << r.n << ": " << p.memory_gib;
    }
  }
  // The seed's winner fits: no trial has checked the model at 48 layers
  // yet, so the plan judges it on the point estimate.
  const auto winner = model->predict(config_of(seed_runs().back()));
  EXPECT_FALSE(winner.verified);
  EXPECT_TRUE(predicted_to_fit(winner, kH200, kHeadroom)) << prediction_prune_reason(winner, kH200, kHeadroom);
}

// The seed's runs as rank 0 of 8, emulated on one H100 (trainer
// --emulate-world 8, bench/emulated_rank.sh; docs/benchmarks.md, 2026-12-07)
// at 16 and 24 layers: the layouts' per-layer terms at depth, against what
// the embedded trainer itself holds. (48 layers need an H200.)
struct EmulatedRow {
  const char* flavor;
  int run;
  double measured_gib;
};

TEST(SeedRuns, EmulatedRankAtSixteenAndTwentyFourLayers) {
  const std::vector<EmulatedRow> rows = {
      {"30B-A3B-L16", 7, 61.79}, {"30B-A3B-L16", 6, 61.87}, {"30B-A3B-L16", 5, 61.54}, {"30B-A3B-L16", 2, 56.41},
      {"30B-A3B-L16", 1, 35.72}, {"30B-A3B-L24", 7, 77.39}, {"30B-A3B-L24", 6, 77.20}, {"30B-A3B-L24", 5, 76.89},
      {"30B-A3B-L24", 2, 70.03}, {"30B-A3B-L24", 1, 42.96},
  };
  auto model = make_memory_model(seed_space());
  for (const auto& row : rows) {
    const SeedRun& r = seed_runs()[static_cast<size_t>(row.run - 1)];
    JobConfig c = config_of(r);
    c.set("model.flavor", std::string(row.flavor));
    const auto p = model->predict(c);
    ASSERT_TRUE(p.known);
    const double err = p.memory_gib / row.measured_gib - 1;
    std::printf("%s run %d measured %6.2f predicted %6.2f (%+5.1f%%)\n", row.flavor, r.n, row.measured_gib,
                p.memory_gib, 100 * err);
    EXPECT_LE(std::abs(err), 0.05) << row.flavor << " run " << r.n;
  }
}

TEST(SeedRuns, TheShippedSpacePredictsTheSeedsWinnerToFit) {
  const Space space = load_space(std::string(PARTUNE_SOURCE_DIR) + "/search_spaces/qwen3_30b_a3b_8xh200.toml");
  const PlanResult result = plan(space);
  auto model = make_memory_model(space);
  const auto capacity = device_memory_gib(space);
  ASSERT_TRUE(capacity.has_value());
  int found = 0;
  for (const auto& c : result.candidates) {
    const JobConfig& j = c.config;
    if (j.get_int("parallelism.tensor_parallel_degree") != 1 || j.get_int("parallelism.expert_parallel_degree") != 4 ||
        j.get_int("training.local_batch_size") != 4 || j.get_int("training.seq_len") != 12288 ||
        j.get_string("activation_checkpoint.mode") != "selective")
      continue;
    ++found;
    const auto p = model->predict(j);
    EXPECT_TRUE(predicted_to_fit(p, *capacity, space.prune.memory_headroom))
        << prediction_prune_reason(p, *capacity, space.prune.memory_headroom);
  }
  EXPECT_EQ(found, 1) << "the shipped space must hold the seed's winner once";
}

}  // namespace
}  // namespace partune
