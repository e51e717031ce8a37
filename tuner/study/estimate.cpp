#include "tuner/study/estimate.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "tuner/search/throughput_model.h"

namespace partune {

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
    const int64_t explore = std::min<int64_t>(e.candidates_fit, 4 * static_cast<int64_t>(layouts.size()));
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
