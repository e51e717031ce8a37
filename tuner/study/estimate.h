// What a study is expected to cost before it runs: trials and seconds under
// the space's strategy (the default, guided, unless [search] says otherwise),
// for `tune plan`'s "estimate" {"trials", "seconds"}.
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

struct StudyEstimate {
  int64_t trials = 0;          // launches, short and full and confirmations
  double seconds = 0;          // summed trial wall time
  int64_t candidates_fit = 0;  // candidates the memory model lets run
};

// Grid and random: every candidate predicted to fit, once, at full steps.
// Guided: two short trials per layout (a probe, then about as many chosen by
// the model: the simulated 8xH200 study launched 33-36 trials for 15 layouts,
// docs/benchmarks.md), a quarter of them promoted to full steps, and the
// top-k confirmations; capped by the candidates that fit, max_trials and the
// time budget.
StudyEstimate estimate_study_cost(const Space& space, const PlanResult& plan, const MemoryModel& memory,
                                  const TrialCost& cost = {});

}  // namespace partune
