// The requirement of issue 9 on the simulated 8xH200 landscape: the default
// strategy finds a config within 1% of the best healthy one in at most 12%
// of the grid's wall time (median over 5 seeds, axis values shuffled), with
// at most 5 OOM and 2 hanging trials launched. No processes, no sleeping:
// the clock is simulated.
#include "sim_study.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

namespace partune::sim {
namespace {

namespace fs = std::filesystem;

class SimStudy : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("partune-sim-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir(const std::string& name) const {
    fs::create_directories(dir_ / name);
    return (dir_ / name).string();
  }
  fs::path dir_;
};

#ifdef PARTUNE_SIM_SUBSET
constexpr uint64_t kBudgetSeeds = 1;
#else
constexpr uint64_t kBudgetSeeds = 3;
#endif

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

TEST_F(SimStudy, LandscapeHasTheShapeOfTheShippedSpace) {
  const SimRun grid = run_sim(PARTUNE_SOURCE_DIR, dir("grid"), "grid", 1);
  EXPECT_EQ(grid.candidates, 810);
  // Start-up costs more than the steps for most candidates.
  const Space space = sim_space(PARTUNE_SOURCE_DIR, dir("x") + "/x.db", "grid", 1);
  int64_t startup_dominates = 0, hanging = 0, oom = 0, retries = 0;
  for (const auto& c : plan(space).candidates) {
    const Truth t = truth(c);
    startup_dominates += kStartupS > space.trial.steps * t.step_s;
    hanging += t.hangs;
    oom += t.memory_gib > kCapacityGib;
    retries += t.memory_gib > 0.92 * kCapacityGib && t.memory_gib <= kCapacityGib;
  }
  EXPECT_GT(startup_dominates, 810 / 2);
  EXPECT_GT(hanging, 0);
  EXPECT_GT(oom, 0);
  EXPECT_GT(retries, 0);
  // Grid finds the best healthy config (noise aside) at the end.
  EXPECT_GE(grid.final_ratio, 0.99);
}

// The landscapes of issue 20, each through the real Study, 5 seeds (axis
// values shuffled by the seed): the default strategy gets within 1% of the
// best healthy config in at most 12% of grid's wall time (median), with at
// most 5 OOM and 2 hanging launches, and its launches and time within what
// `tune plan` estimated (estimate_study_cost); given a time budget of 12% of grid's
// wall time, it never ends with more than 20% of it unused while untried
// candidates predicted to fit remain. The ASan build (PARTUNE_SIM_SUBSET)
// runs two of them: all seven take minutes there.
class Landscapes : public SimStudy, public ::testing::WithParamInterface<std::string> {
 protected:
  Landscape landscape() const {
    for (const auto& l : landscapes())
      if (l.name == GetParam()) return l;
    throw std::runtime_error("no landscape " + GetParam());
  }
  // Grid's wall time on the landscape (seed 1's order; the others' differ
  // by the memory model's calibration order only): a real grid study, once.
  double grid_wall() {
    static std::map<std::string, double> walls;
    auto it = walls.find(GetParam());
    if (it != walls.end()) return it->second;
    SimOptions o;
    o.landscape = landscape();
    return walls[GetParam()] = run_sim(PARTUNE_SOURCE_DIR, dir("grid"), "grid", 1, o).wall_s;
  }
};

TEST_P(Landscapes, DefaultStrategyFindsTheBestInAFractionOfTheGridsTime) {
  std::vector<double> time_fraction, ratio;
  SimOptions o;
  o.landscape = landscape();
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const double grid = grid_wall();
    const SimRun guided = run_sim(PARTUNE_SOURCE_DIR, dir("guided" + std::to_string(seed)), "guided", seed, o);
    time_fraction.push_back(guided.wall_s / grid);
    ratio.push_back(guided.final_ratio);
    EXPECT_LE(guided.counts.oom, 5) << "seed " << seed;
    EXPECT_LE(guided.counts.hang, 2) << "seed " << seed;
    // `tune plan`'s estimate holds the study's launches.
    EXPECT_GE(guided.counts.launched, guided.estimate.trials_min) << "seed " << seed;
    EXPECT_LE(guided.counts.launched, guided.estimate.trials) << "seed " << seed;
    EXPECT_GE(guided.wall_s, guided.estimate.seconds_min) << "seed " << seed;
    EXPECT_LE(guided.wall_s, guided.estimate.seconds) << "seed " << seed;
    std::cout << GetParam() << " seed " << seed << ": guided " << guided.counts.launched << " trials, " << guided.wall_s
              << " s = " << 100 * guided.wall_s / grid << "% of grid (" << grid << " s); best "
              << 100 * guided.final_ratio << "% of the best; oom " << guided.counts.oom << ", hang "
              << guided.counts.hang << ", stopped early " << guided.counts.stopped_early << " (" << guided.drive.end
              << "); estimated " << guided.estimate.trials_min << " to " << guided.estimate.trials << " trials, "
              << guided.estimate.seconds_min << " to " << guided.estimate.seconds << " s\n";
  }
  EXPECT_LE(median(time_fraction), 0.12);
  EXPECT_GE(median(ratio), 0.99);
}

TEST_P(Landscapes, ABudgetOfTwelvePercentOfGridIsSpentOnTheSearch) {
  SimOptions o;
  o.landscape = landscape();
  for (uint64_t seed = 1; seed <= kBudgetSeeds; ++seed) {
    o.budget_s = 0.12 * grid_wall();
    const SimRun r = run_sim(PARTUNE_SOURCE_DIR, dir("budget" + std::to_string(seed)), "guided", seed, o);
    const double unused = std::max(0.0, 1.0 - r.wall_s / *o.budget_s);
    std::cout << GetParam() << " seed " << seed << ": " << r.counts.launched << " trials, " << 100 * (1 - unused)
              << "% of the budget used, best " << 100 * r.final_ratio << "%, " << r.pending_predicted_to_fit
              << " untried predicted to fit (" << r.drive.end << ")\n";
    EXPECT_FALSE(unused > 0.20 && r.pending_predicted_to_fit > 0)
        << "seed " << seed << ": " << 100 * unused << "% unused with " << r.pending_predicted_to_fit
        << " candidates predicted to fit untried";
    EXPECT_GE(r.final_ratio, 0.98) << "seed " << seed;
  }
}

#ifdef PARTUNE_SIM_SUBSET
INSTANTIATE_TEST_SUITE_P(Sim, Landscapes, ::testing::Values("seed_runs", "frontier_thrash"));
#else
INSTANTIATE_TEST_SUITE_P(Sim, Landscapes,
                         ::testing::Values("current", "seed_runs", "selective_large_batch", "frontier_thrash", "noisy",
                                           "smallest_ep", "tp_seq"));
#endif

// Each landscape has the structure its name says (on the true values).
TEST_F(SimStudy, EachLandscapeHasItsStructure) {
  const Space space = sim_space(PARTUNE_SOURCE_DIR, dir("x") + "/x.db", "grid", 1);
  const std::vector<Candidate> cands = plan(space).candidates;
  auto num = [](const Candidate& c, const char* key) { return c.config.get_int(key); };
  auto best_of = [&](const Landscape& l, auto keep) {
    const Candidate* best = nullptr;
    for (const auto& c : cands)
      if (Truth t = truth(c, l); t.healthy && keep(c) && (!best || t.mfu > truth(*best, l).mfu)) best = &c;
    return best;
  };
  auto any = [](const Candidate&) { return true; };
  auto find = [&](int tp, int ep, int etp, int lbs, int seq, const std::string& ac) {
    for (const auto& c : cands)
      if (num(c, "parallelism.tensor_parallel_degree") == tp && num(c, "parallelism.expert_parallel_degree") == ep &&
          num(c, "parallelism.expert_tensor_parallel_degree") == etp && num(c, "training.local_batch_size") == lbs &&
          num(c, "training.seq_len") == seq && c.config.get_string("activation_checkpoint.mode") == ac)
        return c;
    throw std::runtime_error("no such candidate");
  };
  const char* kTp = "parallelism.tensor_parallel_degree";
  const char* kEp = "parallelism.expert_parallel_degree";
  // The seed's seven runs: memory within 4 points, MFU within 2 points (the
  // thrashing ones within 3).
  {
    const Landscape l = seed_runs();
    struct Run {
      int tp, ep, etp, lbs, seq;
      const char* ac;
      double memory_pct, mfu;
    };
    for (const Run& r : {Run{4, 2, 4, 2, 4096, "full", 45, 2}, Run{4, 2, 4, 12, 8192, "selective", 84, 8},
                         Run{4, 2, 4, 16, 8192, "selective", 97, 6}, Run{1, 8, 1, 8, 8192, "selective", 96, 19},
                         Run{1, 8, 1, 6, 8192, "selective", 83, 22}, Run{1, 4, 1, 6, 8192, "selective", 83, 25},
                         Run{1, 4, 1, 4, 12288, "selective", 83, 30}}) {
      const Truth t = truth(find(r.tp, r.ep, r.etp, r.lbs, r.seq, r.ac), l);
      EXPECT_NEAR(100 * t.memory_gib / kCapacityGib, r.memory_pct, 4) << r.tp << "/" << r.ep << " lbs " << r.lbs;
      EXPECT_NEAR(t.mfu, r.mfu, 3) << r.tp << "/" << r.ep << " lbs " << r.lbs;
    }
    const Candidate* best = best_of(l, any);
    EXPECT_EQ(best->id, find(1, 4, 1, 4, 12288, "selective").id);
  }
  // Selective beats full only at large batch.
  {
    const Landscape l = selective_at_large_batch();
    const Truth small_sel = truth(find(1, 8, 1, 4, 8192, "selective"), l);
    const Truth small_full = truth(find(1, 8, 1, 4, 8192, "full"), l);
    EXPECT_LT(small_sel.mfu, small_full.mfu);
    EXPECT_EQ(best_of(l, any)->config.get_string("activation_checkpoint.mode"), "selective");
    EXPECT_GT(num(*best_of(l, any), "training.local_batch_size"), 6);
  }
  // The best is the largest batch under the headroom; the next batch up
  // thrashes.
  {
    const Landscape l = frontier_thrash();
    const Candidate* best = best_of(l, any);
    const int64_t lbs = num(*best, "training.local_batch_size");
    const Candidate up =
        find(static_cast<int>(num(*best, kTp)), static_cast<int>(num(*best, kEp)),
             static_cast<int>(num(*best, "parallelism.expert_tensor_parallel_degree")),
             lbs == 12 ? 16 : static_cast<int>(lbs) + 2, static_cast<int>(num(*best, "training.seq_len")),
             best->config.get_string("activation_checkpoint.mode"));
    const Truth t = truth(up, l);
    EXPECT_GT(t.memory_gib, 0.90 * kCapacityGib);
    EXPECT_LT(t.memory_gib, kCapacityGib);
    EXPECT_LT(t.mfu, truth(*best, l).mfu);
  }
  EXPECT_EQ(num(*best_of(smallest_ep(), any), kEp), 1);
  // TP x seq: TP > 1 wins at the longest sequence, TP = 1 at the shortest.
  EXPECT_GT(num(*best_of(tp_seq(), any), kTp), 1);
  EXPECT_EQ(num(*best_of(tp_seq(), [&](const Candidate& c) { return num(c, "training.seq_len") == 4096; }), kTp), 1);
  EXPECT_EQ(noisy().step_noise, 0.05);
  EXPECT_EQ(landscapes().size(), 7u);
}

// Parallel slots (issue 13): the loop keeps every slot busy, runs each grid
// candidate once with the same result as the serial loop, and finishes in
// about 1/slots of the serial simulated time.
TEST_F(SimStudy, FourSlotsRunTheSameGridInAQuarterOfTheTime) {
  SimOptions serial, parallel;
  serial.max_trials = parallel.max_trials = 120;
  parallel.slots = 4;
  const SimRun one = run_sim(PARTUNE_SOURCE_DIR, dir("serial"), "grid", 3, serial);
  const SimRun four = run_sim(PARTUNE_SOURCE_DIR, dir("parallel"), "grid", 3, parallel);
  EXPECT_EQ(one.max_running, 1u);
  EXPECT_EQ(four.max_running, 4u);
  EXPECT_EQ(four.drive.launched, 120);
  EXPECT_TRUE(four.drive.stopped_by_max_trials);
  // Each candidate once, the same ones in the same order of starts.
  std::set<std::string> ids;
  for (const auto& [id, req] : four.asked) EXPECT_TRUE(ids.insert(id).second) << id << " asked twice";
  ASSERT_EQ(one.asked.size(), four.asked.size());
  for (size_t k = 0; k < one.asked.size(); ++k) EXPECT_EQ(one.asked[k].first, four.asked[k].first);
  // The same results, trial by trial.
  ASSERT_EQ(one.metrics.size(), four.metrics.size());
  for (const auto& [id, m] : one.metrics) {
    ASSERT_TRUE(four.metrics.count(id)) << id;
    EXPECT_EQ(m.mfu, four.metrics.at(id).mfu) << id;
    EXPECT_EQ(m.memory_gib, four.metrics.at(id).memory_gib) << id;
  }
  EXPECT_NEAR(four.wall_s / one.wall_s, 0.25, 0.03) << four.wall_s << " s vs " << one.wall_s << " s";
}

// The default (guided) sampler with 4 slots: it keeps asking while trials
// are outstanding, never has one candidate running twice, still finds the
// best, and the time budget stops new starts (what runs is waited for).
TEST_F(SimStudy, GuidedSearchWithFourSlots) {
  SimOptions o;
  o.slots = 4;
  const SimRun guided = run_sim(PARTUNE_SOURCE_DIR, dir("guided"), "guided", 2, o);
  EXPECT_EQ(guided.max_running, 4u);
  EXPECT_GE(guided.final_ratio, 0.98);
  EXPECT_LE(guided.counts.oom, 8);
  const SimRun serial = run_sim(PARTUNE_SOURCE_DIR, dir("guided1"), "guided", 2);
  EXPECT_LT(guided.wall_s, 0.5 * serial.wall_s) << guided.wall_s << " s vs " << serial.wall_s << " s";
  std::cout << "guided, 4 slots: " << guided.counts.launched << " trials in " << guided.wall_s << " s (serial "
            << serial.counts.launched << " in " << serial.wall_s << " s), best " << 100 * guided.final_ratio << "%\n";

  SimOptions budget = o;
  budget.budget_s = 600;
  const SimRun cut = run_sim(PARTUNE_SOURCE_DIR, dir("budget"), "guided", 2, budget);
  EXPECT_TRUE(cut.drive.stopped_by_budget);
  EXPECT_GE(cut.wall_s, 600);
  // Every trial was started before the budget ran out: the last ones end
  // within a trial's length after it.
  EXPECT_LT(cut.wall_s, 600 + 400) << cut.wall_s;
}

}  // namespace
}  // namespace partune::sim
