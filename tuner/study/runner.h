// The study runner: `tune run`. Plans the space, records the candidates,
// ends whatever a killed earlier run left behind, then runs the study loop
// (drive.h) with the space's sampler on real processes — each trial written
// to the store as it happens, parsed, classified, summarised — pruning what
// the memory model or a trial over the memory limit makes pointless. Killing tune at any moment loses nothing: running
// it again resumes (finished trials are not rerun; interrupted ones are).
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {

struct RunOptions {
  std::string tune_exe;                 // path of the running tune (locates bin/trainer)
  std::optional<double> time_budget_s;  // overrides [search] time_budget: no trial starts after it
  std::optional<int64_t> max_trials;    // overrides [search] max_trials: launches by this run
  bool live = false;                    // rewrite a status line (terminal)
};

struct RunSummary {
  int64_t candidates = 0;
  int64_t finished_before = 0;                            // done/failed/pruned when this run started
  int64_t ran = 0;                                        // trials launched by this run
  int64_t done = 0, failed = 0, pruned = 0, pending = 0;  // whole study, at the end
  int64_t reset = 0;                                      // trials a killed earlier run left running, rerun
  int64_t leftovers_killed = 0;                           // processes of an earlier run ended before starting
  double wall_s = 0;                                      // this run
  double trial_wall_s = 0;                                // summed wall time of the launched processes
  double production_wall_s = 0;  // summed wall time of the [confirm] production runs (one at a time, in `ran`)
  bool stopped_by_budget = false;
  int parallel = 1;  // trials at once ([launcher] parallel_trials)
  // Tuner time per trial that is not the trial's processes: planning share,
  // config writing, store writes, parsing, process start/stop bookkeeping
  // (with trials at once: the wall time beyond their summed time over the
  // slots, which counts slots left idle too). The production runs of
  // [confirm] are trials' time too, not tune's.
  double overhead_per_trial_s() const {
    return ran ? std::max(0.0, wall_s - trial_wall_s / parallel - production_wall_s) / static_cast<double>(ran) : 0;
  }
};

// The job config a trial runs: the candidate's config plus what a short trial
// needs (its step count, a step line every step) and isolation from a
// production base (checkpoint.enable = false, wandb off, job.dump_folder in
// `trial_dir`, tensorboard / trace folders inside it). Not exported.
JobConfig trial_config(const Candidate& c, int steps, const std::string& trial_dir);

// Runs (or resumes) the study. Throws InputError for bad input (exit 2) and
// StudyBusy-style InputError when another tune holds the study.
RunSummary run_study(const Space& space, const RunOptions& options, std::ostream& out);

// The environment key and token that mark every process of a study's trials,
// so a later run can find and end the leftovers of a killed one.
inline constexpr const char* kStudyTokenEnv = "PARTUNE_STUDY_TOKEN";
std::string study_token(const std::string& db_path, const std::string& study);
// The environment key that marks the processes of one run of tune (value:
// its pid and start time), which its guard ends when tune dies.
inline constexpr const char* kRunMarkEnv = "PARTUNE_RUN";

}  // namespace partune
