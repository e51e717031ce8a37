#include "tuner/study/estimate.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>
#include <utility>

#include "tuner/search/guided_sampler.h"
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
  if (space.search.strategy == "guided") {
    const GuidedOptions rules;  // the guided sampler's own numbers
    const int short_steps = t.warmup_steps + rules.short_counted_steps;
    // Short trials are skipped when a full run is barely longer (as the sampler does).
    const bool has_short = 2 * short_steps <= t.steps;
    const double short_s = has_short ? cost.startup_s + short_steps * cost.step_s : full_s;
    const int64_t probes = std::min<int64_t>(e.candidates_fit, 2 * static_cast<int64_t>(layouts.size()));
    const int64_t explored_max = std::min<int64_t>(e.candidates_fit, probes + rules.patience);
    const auto cost_of = [&](int64_t explored, int64_t confirm_runs) {
      const int64_t promoted = has_short ? (explored + 3) / 4 : 0;
      const int64_t confirm = std::min<int64_t>(space.search.confirm_top_k, has_short ? promoted : explored);
      // The first two contenders, when too close to call, get runs up to max_confirm_runs.
      const int64_t tie_break = confirm >= 2 ? 2 * (confirm_runs - 2) : 0;
      return std::pair<int64_t, double>{explored + promoted + confirm + tie_break,
                                        explored * short_s + (promoted + confirm + tie_break) * full_s};
    };
    if (!space.search.time_budget_s) {
      // Exploration stops on the model's measured error, or after its patience.
      std::tie(e.trials_min, e.seconds_min) = cost_of(probes, 2);
      std::tie(e.trials, e.seconds) = cost_of(explored_max, rules.max_confirm_runs);
    } else {
      // With a budget only the budget (or running out of candidates) ends
      // exploration: the launches are those the budget pays for; fewer when
      // the contenders need their tie-break runs.
      const double budget = *space.search.time_budget_s;
      const auto within_budget = [&](int64_t confirm_runs) {
        std::pair<int64_t, double> at = cost_of(probes, confirm_runs);
        for (int64_t explored = probes + 1; explored <= e.candidates_fit; ++explored) {
          const auto next = cost_of(explored, confirm_runs);
          if (next.second > budget) break;
          at = next;
        }
        // Not even the probes fit: the budget pays for its share of them.
        if (at.second > budget) at.first = static_cast<int64_t>(static_cast<double>(at.first) * budget / at.second);
        return at.first;
      };
      e.trials = within_budget(2);
      e.trials_min = within_budget(rules.max_confirm_runs);
      // The study spends its budget, unless every candidate that fits is measured first.
      e.seconds = e.seconds_min = std::min(budget, cost_of(e.candidates_fit, 2).second);
    }
  } else {
    e.trials_min = e.trials = e.candidates_fit;
    e.seconds_min = e.seconds = static_cast<double>(e.candidates_fit) * full_s * t.repeats;
  }
  if (space.search.max_trials) {
    // Fewer launches cost proportionally less (an approximation: the cut comes at the end).
    const auto cap = [&](int64_t& trials, double& seconds) {
      if (trials <= *space.search.max_trials) return;
      seconds *= static_cast<double>(*space.search.max_trials) / static_cast<double>(trials);
      trials = *space.search.max_trials;
    };
    cap(e.trials, e.seconds);
    cap(e.trials_min, e.seconds_min);
  }
  if (space.search.time_budget_s) {
    e.seconds = std::min(e.seconds, *space.search.time_budget_s);
    e.seconds_min = std::min(e.seconds_min, *space.search.time_budget_s);
  }
  return e;
}

}  // namespace partune
