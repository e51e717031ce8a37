// What `tune list`, `tune show` and `tune best` print: the JSON users script
// against (shape documented in docs/results-db.md; keep it stable), the
// health rule that decides which trials are fit to train on, the ranking,
// and the text tables.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuner/store/store.h"

namespace partune {

inline constexpr double kDefaultMemoryHeadroom = 0.90;

// Done, peak memory within the headroom (when known: memory_pct <= 100 *
// headroom) and no allocation retries. A configuration at the edge of memory
// is not one to train on for weeks.
bool is_healthy(const TrialRecord& r, double memory_headroom = kDefaultMemoryHeadroom);

// {"id", "status", "failure" (string or null), "reason", "config" (every axis
// as "section.key": value), "metrics" {"mfu", "tps", "tflops", "memory_gib",
// "memory_pct", "alloc_retries", "oom_errors", "counted_steps"} (null where
// unknown), "attempt", "wall_s", "started_at", "finished_at", "pruned_by",
// "source", "healthy", "study"}; with_steps adds "job_config" (every key of
// the full job config) and "steps" (the latest attempt's rows).
nlohmann::json trial_to_json(const TrialRecord& r, bool with_steps, double memory_headroom = kDefaultMemoryHeadroom);

// The metric an objective maximises ("mfu" | "tps" | "tflops"; InputError
// otherwise); nullopt when the trial did not report it.
std::optional<double> objective_metric(const TrialMetrics& m, const std::string& objective);

// The objective as measured on the production backend ([confirm], the
// trial's facts_json.production), when that run was healthy.
std::optional<double> production_value(const TrialRecord& r, const std::string& objective);

// Ranks done trials that have the objective metric ("mfu" | "tps" |
// "tflops"; InputError otherwise), best first, ties by id: trials with a
// healthy production measurement first, by it; then the others by their own.
// Healthy trials only (and, where measured in production, healthy there too)
// unless include_all. top == 0: all of them.
std::vector<TrialRecord> rank_best(std::vector<TrialRecord> trials, const std::string& objective, size_t top,
                                   double memory_headroom = kDefaultMemoryHeadroom, bool include_all = false);

struct TableOptions {
  bool rank = false;    // a leading "#" column (for best)
  bool health = false;  // a "healthy" column (for best --all)
  double memory_headroom = kDefaultMemoryHeadroom;
};

// One row a trial: id, status, one column per axis (short names: TP, EP,
// lbs, ...), mfu, tps, memory, retries, failure / reason.
std::string trials_table(const std::vector<TrialRecord>& trials, const TableOptions& options = {});

// `tune show`: identity and timings, axes, summary, health, the full job
// config and the step table of the latest attempt.
std::string trial_detail(const TrialRecord& r, double memory_headroom = kDefaultMemoryHeadroom);

// Short column name of an axis: "parallelism.tensor_parallel_degree" -> "TP";
// unknown keys: the part after the last '.'.
std::string axis_short_name(const std::string& key);

}  // namespace partune
