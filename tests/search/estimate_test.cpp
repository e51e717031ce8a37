// What `tune plan` will say a study costs: trials and seconds under the
// space's strategy, from the memory model's verdicts and the trial cost (a
// default guess, or what a study's finished trials measured).
#include "tuner/study/estimate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "sim_landscape.h"

namespace partune {
namespace {

namespace fs = std::filesystem;

Space space_for(const std::string& strategy) {
  return sim::sim_space(PARTUNE_SOURCE_DIR, (fs::temp_directory_path() / "unused.db").string(), strategy, 1);
}

TEST(Estimate, GridRunsEveryCandidatePredictedToFitOnce) {
  const Space space = space_for("grid");
  const PlanResult planned = plan(space);
  sim::SimMemoryModel memory;
  int64_t fit = 0;
  for (const auto& c : planned.candidates)
    fit += predicted_to_fit(memory.predict(c.config), sim::kCapacityGib, space.prune.memory_headroom);
  ASSERT_GT(fit, 0);
  ASSERT_LT(fit, static_cast<int64_t>(planned.candidates.size()));
  const TrialCost cost{300, 5};
  const StudyEstimate e = estimate_study_cost(space, planned, memory, cost);
  EXPECT_EQ(e.candidates_fit, fit);
  EXPECT_EQ(e.trials, fit);
  EXPECT_DOUBLE_EQ(e.seconds, static_cast<double>(fit) * (300 + space.trial.steps * 5));
}

TEST(Estimate, GuidedIsARangeFromItsRulesAFractionOfGridAndTheBudgetCapsIt) {
  Space guided = space_for("guided");
  const PlanResult planned = plan(guided);
  sim::SimMemoryModel memory;
  const StudyEstimate g = estimate_study_cost(guided, planned, memory);
  const StudyEstimate grid = estimate_study_cost(space_for("grid"), planned, memory);
  // 15 layouts: at the least 30 probes, 8 promoted, 3 confirmations; at the
  // most 30 probes + 40 explored (patience), 18 promoted, 3 confirmations and
  // 4 tie-break runs.
  EXPECT_EQ(g.trials_min, 30 + 8 + 3);
  EXPECT_EQ(g.trials, 70 + 18 + 3 + 4);
  EXPECT_LT(g.seconds_min, g.seconds);
  EXPECT_EQ(grid.trials_min, grid.trials);
  EXPECT_DOUBLE_EQ(grid.seconds_min, grid.seconds);
  EXPECT_LT(g.seconds_min, 0.12 * grid.seconds);
  EXPECT_LT(g.seconds, 0.2 * grid.seconds);
  // A budget pays for exploration until it is spent: more launches than
  // patience allows when it is long, fewer when short.
  guided.search.time_budget_s = 2 * g.seconds;
  const StudyEstimate night = estimate_study_cost(guided, planned, memory);
  EXPECT_DOUBLE_EQ(night.seconds, 2 * g.seconds);
  EXPECT_DOUBLE_EQ(night.seconds_min, 2 * g.seconds);
  EXPECT_GT(night.trials_min, g.trials);
  EXPECT_LT(night.trials_min, night.trials);  // tie-break runs take the place of explored ones
  guided.search.time_budget_s = 3600;
  const StudyEstimate budgeted = estimate_study_cost(guided, planned, memory);
  EXPECT_DOUBLE_EQ(budgeted.seconds, 3600);
  EXPECT_DOUBLE_EQ(budgeted.seconds_min, 3600);
  EXPECT_LT(budgeted.trials, g.trials_min);
  guided.search.max_trials = 5;
  const StudyEstimate capped = estimate_study_cost(guided, planned, memory);
  EXPECT_EQ(capped.trials, 5);
  EXPECT_EQ(capped.trials_min, 5);
  EXPECT_LT(capped.seconds, 3600);
}

TEST(Estimate, MeasuredCostIsTheMedianStartupAndStepTime) {
  TrialSpec spec;
  spec.steps = 20;
  std::vector<TrialRecord> trials(4);
  for (auto& t : trials) t.status = TrialStatus::Done;
  trials[0].startup_s = 100, trials[0].wall_s = 200;  // 5 s a step over 20 steps
  trials[1].startup_s = 120, trials[1].wall_s = 240;  // 6 s a step
  trials[2].startup_s = 110, trials[2].wall_s = 140;  // a short run: 6 steps, 5 s a step
  trials[2].facts = {{"search", {{"steps", 6}}}};
  trials[3].status = TrialStatus::Failed;  // failures say nothing of a step
  trials[3].startup_s = 1, trials[3].wall_s = 2;
  const TrialCost c = measured_trial_cost(trials, spec);
  EXPECT_DOUBLE_EQ(c.startup_s, 110);
  EXPECT_DOUBLE_EQ(c.step_s, 5);
  const TrialCost none = measured_trial_cost({}, spec, {42, 7});
  EXPECT_DOUBLE_EQ(none.startup_s, 42);
  EXPECT_DOUBLE_EQ(none.step_s, 7);
}

}  // namespace
}  // namespace partune
