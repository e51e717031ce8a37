// The guided strategy's parts on their own, deterministic and on the CPU:
// the throughput model's measured error (the leave-one-out residuals of the
// main effects plus the residual Gaussian process) against refits without
// each point; the stopping rule (without a budget: the expected improvement
// under the measured error, never patience alone; with one: the budget);
// and the memory frontier's coverage (every layout not set aside gets a
// probe at its largest batch predicted to fit).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "sim_study.h"
#include "tuner/search/throughput_model.h"

namespace partune {
namespace {

namespace fs = std::filesystem;

// 48 candidates: TP x lbs x seq x AC on the command backend.
std::vector<Candidate> small_space() {
  const Space space = load_space_from_string(R"([study]
name = "model"
objective = "mfu"
[hardware]
devices = 8
[backend]
kind = "command"
argv = ["prog", "{config_file}"]
[base.model]
name = "qwen3"
flavor = "30B-A3B"
[space]
"parallelism.tensor_parallel_degree" = [1, 2]
"training.local_batch_size" = [1, 2, 4, 8]
"training.seq_len" = [1024, 2048, 4096]
"activation_checkpoint.mode" = ["none", "full"]
)",
                                             "model.toml");
  return plan(space).candidates;
}

double num(const Candidate& c, const char* key) { return static_cast<double>(c.config.get_int(key)); }

// log throughput: main effects, a TP x seq interaction, and noise from a
// fixed sequence (so the test is the same everywhere).
double truth_log(const Candidate& c, double interaction, double noise, size_t k) {
  const double tp = num(c, "parallelism.tensor_parallel_degree"), lbs = num(c, "training.local_batch_size"),
               seq = num(c, "training.seq_len");
  const bool full = c.config.get_string("activation_checkpoint.mode") == "full";
  double y = std::log(30.0) - 0.2 * (tp - 1) + 0.15 * std::log2(lbs) + 0.05 * std::log2(seq / 1024) - (full ? 0.1 : 0);
  y += interaction * (tp - 1) * std::log2(seq / 1024);
  return y + noise * sim::hashed_unit("noise " + std::to_string(k)) * std::sqrt(3.0);  // unit variance
}

TEST(ThroughputModel, ItsErrorIsUnmeasuredUntilEnoughResults) {
  const auto cands = small_space();
  ThroughputModel m(cands);
  std::vector<std::pair<size_t, double>> obs;
  for (size_t i = 0; i < ResidualModel::kMinForError - 1; ++i)
    obs.emplace_back(i * 7, truth_log(cands[i * 7], 0, 0, i));
  m.fit(obs);
  EXPECT_LT(m.measured_error(), 0);
  obs.emplace_back(3, truth_log(cands[3], 0, 0, 99));
  m.fit(obs);
  EXPECT_GE(m.measured_error(), 0);
}

// The measured error follows the noise of the results, and is what refits
// without each result see (within a factor of 2).
TEST(ThroughputModel, MeasuredErrorIsTheLeaveOneOutError) {
  const auto cands = small_space();
  ASSERT_EQ(cands.size(), 48u);
  std::vector<size_t> seen;
  for (size_t i = 0; i < cands.size(); i += 2) seen.push_back(i);  // 24 results
  for (double noise : {0.0, 0.02, 0.06}) {
    std::vector<std::pair<size_t, double>> obs;
    for (size_t k = 0; k < seen.size(); ++k) obs.emplace_back(seen[k], truth_log(cands[seen[k]], 0.08, noise, k));
    ThroughputModel m(cands);
    m.fit(obs);
    double ss = 0;
    for (size_t k = 0; k < obs.size(); ++k) {
      std::vector<std::pair<size_t, double>> rest = obs;
      rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(k));
      ThroughputModel without(cands);
      without.fit(rest);
      const double r = obs[k].second - without.predict(obs[k].first).mean;
      ss += r * r;
    }
    const double refit = std::sqrt(ss / static_cast<double>(obs.size()));
    EXPECT_GT(m.measured_error(), refit / 2) << "noise " << noise;
    EXPECT_LT(m.measured_error(), refit * 2 + 0.005) << "noise " << noise;
    if (noise > 0.05) {
      EXPECT_GT(m.measured_error(), 0.5 * noise);
    }
  }
}

// The residual model learns an interaction the main effects cannot hold: its
// predictions of unseen candidates are better than the main effects' alone.
TEST(ThroughputModel, TheResidualModelLearnsAnInteraction) {
  const auto cands = small_space();
  std::vector<std::pair<size_t, double>> obs;
  std::set<size_t> seen;
  for (size_t i = 0; i < cands.size(); ++i) {
    if (fnv1a64(cands[i].id) % 3 == 0) continue;  // two thirds seen, not by plan order
    obs.emplace_back(i, truth_log(cands[i], 0.15, 0, i));
    seen.insert(i);
  }
  ThroughputModel m(cands);
  m.fit(obs);
  double with = 0, without = 0;
  for (size_t i = 0; i < cands.size(); ++i) {
    if (seen.count(i)) continue;
    const double y = truth_log(cands[i], 0.15, 0, i);
    with += std::pow(y - m.predict(i).mean, 2);
    without += std::pow(y - m.predict(i).linear, 2);
  }
  EXPECT_LT(with, 0.7 * without) << with << " vs " << without;
}

class GuidedRules : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("partune-guided-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir(const std::string& name) const {
    fs::create_directories(dir_ / name);
    return (dir_ / name).string();
  }
  fs::path dir_;
};

bool has_note(const sim::SimRun& r, const std::string& text) {
  return std::any_of(r.notes.begin(), r.notes.end(), [&](const std::string& n) { return n.find(text) != n.npos; });
}

// Without a budget the study ends on the expected improvement judged with
// the model's measured error, not on patience; the same run twice asks for
// the same trials.
TEST_F(GuidedRules, WithoutABudgetExplorationEndsOnTheMeasuredError) {
  const sim::SimRun a = sim::run_sim(PARTUNE_SOURCE_DIR, dir("a"), "guided", 1);
  EXPECT_TRUE(has_note(a, "exploration ends: the best expected improvement is")) << a.drive.end;
  EXPECT_TRUE(has_note(a, "measured on"));
  EXPECT_FALSE(has_note(a, "trials without a 0.5% gain"));
  EXPECT_EQ(a.drive.end.find("explored and confirmed") != std::string::npos, true) << a.drive.end;
  const sim::SimRun b = sim::run_sim(PARTUNE_SOURCE_DIR, dir("b"), "guided", 1);
  ASSERT_EQ(a.asked.size(), b.asked.size());
  for (size_t k = 0; k < a.asked.size(); ++k) EXPECT_EQ(a.asked[k].first, b.asked[k].first);
}

// With a budget the expected improvement never ends the search: it pauses
// only to keep what confirming the contenders costs, confirms, and has used
// nearly all of the budget at the end.
TEST_F(GuidedRules, WithABudgetOnlyTheBudgetEndsTheSearch) {
  sim::SimOptions o;
  o.budget_s = 45000;
  const sim::SimRun r = sim::run_sim(PARTUNE_SOURCE_DIR, dir("b"), "guided", 2, o);
  EXPECT_FALSE(has_note(r, "exploration ends"));
  EXPECT_GE(r.wall_s, 0.9 * 45000);
  size_t confirms = 0;
  for (const auto& [id, req] : r.asked) confirms += req.fidelity == Fidelity::Confirm;
  EXPECT_GE(confirms, 1u);
  EXPECT_GT(r.pending_predicted_to_fit, 0);  // the budget, not the candidates, ended it
}

// Every layout that was not set aside gets a probe on its memory frontier:
// the largest batch of its (AC, seq) predicted to fit, at least the batch of
// its first probe.
TEST_F(GuidedRules, EveryLayoutNotSetAsideGetsAFrontierProbe) {
  const sim::SimRun r = sim::run_sim(PARTUNE_SOURCE_DIR, dir("f"), "guided", 4);
  std::map<std::string, double> first_lbs, frontier_lbs;
  for (const auto& [id, req] : r.asked) {
    const Candidate& c = r.candidates_by_id.at(id);
    const std::string layout = layout_key(c);
    const double lbs = num(c, "training.local_batch_size");
    if (req.why.rfind("probe of layout", 0) == 0) first_lbs[layout] = lbs;
    if (req.why.rfind("frontier probe of layout", 0) == 0) frontier_lbs[layout] = lbs;
  }
  std::set<std::string> set_aside;
  for (const auto& n : r.notes)
    if (n.rfind("layout ", 0) == 0 && n.find(" set aside") != n.npos)
      set_aside.insert(n.substr(7, n.find(" set aside") - 7));
  ASSERT_GT(first_lbs.size(), 10u);
  for (const auto& [layout, lbs] : first_lbs) {
    if (set_aside.count(layout)) continue;
    ASSERT_TRUE(frontier_lbs.count(layout)) << layout;
    EXPECT_GE(frontier_lbs[layout], lbs) << layout;
  }
  EXPECT_FALSE(set_aside.empty());  // the hanging layout
}

}  // namespace
}  // namespace partune
