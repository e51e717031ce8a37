// What a study is expected to cost before it runs: trials and seconds under
// the space's strategy (the default, guided, unless [search] says otherwise),
// for `tune plan`'s "estimate" {"trials", "seconds", "trials_min",
// "seconds_min"}.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "tuner/estimate/memory_model.h"
#include "tuner/plan/planner.h"
#include "tuner/space/space.h"
#include "tuner/store/store.h"

namespace partune {

// Seconds of one trial: start-up (process start to the first step) plus
// steps. From measured trials when a study has some (startup_s, wall_s),
// else these defaults: a guess, shown as one.
struct TrialCost {
  double startup_s = 120;  // a 30B MoE at full depth takes minutes to build
  double step_s = 5;
};

// The cost of a trial as a study's finished trials show it: the median
// start-up (startup_s) and the median seconds per step after it ((wall_s -
// startup_s) / steps run); `fallback` where no trial says.
TrialCost measured_trial_cost(const std::vector<TrialRecord>& trials, const TrialSpec& trial,
                              const TrialCost& fallback = {});

// A range where the strategy decides as it goes (guided: where exploration
// stops depends on what the trials measure), else min == max. Plan a night
// by the max.
struct StudyEstimate {
  int64_t trials = 0;          // launches, short and full and confirmations: at most about
  double seconds = 0;          // summed trial wall time: at most about
  int64_t trials_min = 0;      // at least about
  double seconds_min = 0;      // at least about
  int64_t candidates_fit = 0;  // candidates the memory model lets run
};

// Grid and random: every candidate predicted to fit, once, at full steps.
// Guided, as its rules run (guided_sampler.h): a probe and a frontier probe
// per layout, then exploration (none at the least; at the most its patience,
// the trials it may spend without a gain before it stops), a quarter of the
// short trials promoted to full steps, and the top-k confirmations (at the
// most with the tie-break runs of the first two). The seven simulated 8xH200
// landscapes (15 layouts) launch 56-76 trials without a budget; this says 41
// to 95. With a time budget guided explores until the budget is spent: the
// launches are those the budget pays for. Both ends are capped by the
// candidates that fit and max_trials.
StudyEstimate estimate_study_cost(const Space& space, const PlanResult& plan, const MemoryModel& memory,
                                  const TrialCost& cost = {});

}  // namespace partune
