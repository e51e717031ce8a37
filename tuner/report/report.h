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
#include "tuner/trial/health.h"

namespace partune {

// Done and within the memory limit (tuner/trial/health.h: no OOM, peak
// memory within the headroom, no allocation retries where the rule counts
// them). A configuration at the edge of memory is not one to train on for weeks.
bool is_healthy(const TrialRecord& r, const HealthRule& rule = {});

// Why the trial's production check ([confirm], facts_json.production) rules
// it out: it failed (with its reason) or was not healthy; "" when it passed
// or there was none.
std::string production_problem(const TrialRecord& r);
// Healthy, and not ruled out by a production check: what `tune best` ranks,
// and what the "healthy" column of `tune best --all` says (the JSON's
// "healthy" is the study's own measurement, as documented; the production
// check is in the trial's facts).
bool fit_to_train_on(const TrialRecord& r, const HealthRule& rule = {});

// Why `trials` have no best to show: a clause (or a few lines) to follow
// "no healthy finished trial: ".
std::string why_no_best(const std::vector<TrialRecord>& trials, const HealthRule& health = {});

// {"id", "status", "failure" (string or null), "reason", "config" (every axis
// as "section.key": value), "metrics" {"mfu", "tps", "tflops", "memory_gib",
// "memory_pct", "alloc_retries", "oom_errors", "counted_steps"} (null where
// unknown), "attempt", "wall_s", "started_at", "finished_at", "pruned_by",
// "source", "healthy", "study"}; with_steps adds "job_config" (every key of
// the full job config) and "steps" (the latest attempt's rows).
nlohmann::json trial_to_json(const TrialRecord& r, bool with_steps, const HealthRule& health = {});

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
                                   const HealthRule& health = {}, bool include_all = false);

struct TableOptions {
  bool rank = false;    // a leading "#" column (for best)
  bool health = false;  // a "healthy" column (for best --all)
  HealthRule health_rule;
};

// One row a trial: id, status, one column per axis (short names: TP, EP,
// lbs, ...), mfu, tps, memory, retries, failure / reason.
std::string trials_table(const std::vector<TrialRecord>& trials, const TableOptions& options = {});

// `tune show`: identity and timings, axes, summary, health, the full job
// config and the step table of the latest attempt.
std::string trial_detail(const TrialRecord& r, const HealthRule& health = {});

}  // namespace partune
