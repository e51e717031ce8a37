// The study loop, the same for real and simulated trials:
//   ask the sampler -> prune before launch (memory model) -> launch -> tell
//   (after a trial's result: the candidates its recalibration un-pruned are
//   restored to the sampler, then the result is told).
// It ends when the sampler is finished, at the time budget (no trial starts
// after it; the study resumes on the next run), or after max_trials launches
// by this run. Progress shows every trial, every decision and, after each
// trial, the study's status line.
//
// With several slots (TrialExecutor::slots) the loop keeps asking while a
// slot is free, so up to that many trials run at once; a sampler's Wait
// means "after the next trial ends". At the end (budget, max_trials, the
// sampler finished) nothing new starts and the running trials are waited
// for; their results count like any other.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tuner/search/sampler.h"
#include "tuner/study/executor.h"
#include "tuner/study/progress.h"
#include "tuner/study/study.h"

namespace partune {

struct DriveOptions {
  std::optional<double> budget_s;     // of the executor's clock
  std::optional<int64_t> max_trials;  // launches by this run
  // The sampler knows the study already (replay.h): the loop does not tell
  // it the study's history, and starts `restart` (launches a killed run left
  // without a result) before it asks for anything.
  bool replayed = false;
  std::vector<TrialRequest> restart;
};

// Best-so-far after each trial, for curves: the executor clock and the best
// trial (index into the study's candidates) when it finished.
struct BestPoint {
  double time_s = 0;
  std::optional<size_t> best;
};

struct DriveSummary {
  int64_t launched = 0;
  int64_t pruned_before_launch = 0;
  int64_t unpruned = 0;  // pruned by prediction, back after a recalibration
  int64_t stopped_early = 0;
  double trial_wall_s = 0;
  bool stopped_by_budget = false;
  bool stopped_by_max_trials = false;
  std::string end;  // why the loop ended
  std::vector<BestPoint> curve;
};

DriveSummary drive_study(Study& study, Sampler& sampler, TrialExecutor& executor, Progress& progress,
                         const DriveOptions& options);

}  // namespace partune
