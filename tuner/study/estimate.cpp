#include "tuner/study/estimate.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "tuner/search/throughput_model.h"

namespace partune {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
}  // namespace

TrialCost measured_trial_cost(const std::vector<TrialRecord>& trials, const TrialSpec& trial,
                              const TrialCost& fallback) {
  std::vector<double> startup, step;
  for (const auto& r : trials) {
    if (r.status != TrialStatus::Done || !r.startup_s || !r.wall_s) continue;
    startup.push_back(*r.startup_s);
    int steps = trial.steps;
    if (r.facts.contains("search") && r.facts["search"].contains("steps") && r.facts["search"]["steps"].is_number())
      steps = r.facts["search"]["steps"].get<int>();
    if (steps > 0 && *r.wall_s > *r.startup_s) step.push_back((*r.wall_s - *r.startup_s) / steps);
  }
  TrialCost c = fallback;
  if (!startup.empty()) c.startup_s = median(startup);
  if (!step.empty()) c.step_s = median(step);
  return c;
}

StudyEstimate estimate_study_cost(const Space& space, const PlanResult& plan, const MemoryModel& memory,
                                  const TrialCost& cost) {
  StudyEstimate e;
  const std::optional<double> capacity = device_memory_gib(space);
  std::set<std::string> layouts;
  for (const auto& c : plan.candidates) {
    if (capacity && !predicted_to_fit(memory.predict(c.config), *capacity, space.prune.memory_headroom)) continue;
    ++e.candidates_fit;
    layouts.insert(layout_key(c));
  }
  const TrialSpec& t = space.trial;
  const double full_s = cost.startup_s + t.steps * cost.step_s;
  int64_t short_trials = 0, full_trials = 0;
  if (space.search.strategy == "guided") {
    const int short_steps = t.warmup_steps + 3;  // GuidedOptions::short_counted_steps
    const bool has_short = 2 * short_steps <= t.steps;
    const int64_t explore = std::min<int64_t>(e.candidates_fit, 2 * static_cast<int64_t>(layouts.size()));
    const int64_t promoted = (explore + 3) / 4;
    const int64_t confirm = std::min<int64_t>(space.search.confirm_top_k, promoted);
    if (has_short) {
      short_trials = explore;
      full_trials = promoted + confirm;
    } else {
      full_trials = explore + confirm;
    }
    e.seconds = short_trials * (cost.startup_s + short_steps * cost.step_s) + full_trials * full_s;
  } else {
    full_trials = e.candidates_fit;
    e.seconds = full_trials * full_s * t.repeats;
  }
  e.trials = short_trials + full_trials;
  if (space.search.max_trials) e.trials = std::min(e.trials, *space.search.max_trials);
  if (space.search.time_budget_s) e.seconds = std::min(e.seconds, *space.search.time_budget_s);
  return e;
}

}  // namespace partune
