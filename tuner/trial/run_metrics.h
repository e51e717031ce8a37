// Several runs of one config as one result (repeats, confirmations), and a
// result as JSON (the form the store's facts keep individual runs in).
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "tuner/trial/trial.h"

namespace partune {

enum class RunStatistic { Median, Mean };

// Each rate (mfu, tps, tflops) by `how` over the runs that report it, the
// largest memory, every retry, OOM error and counted step summed (a run that
// retried makes the config unhealthy). One run is returned as it is.
TrialMetrics combine_runs(const std::vector<TrialMetrics>& runs, RunStatistic how);

// {"mfu", "tps", "tflops", "memory_gib", "memory_pct" (null when unknown),
// "alloc_retries", "oom_errors", "counted_steps"}; metrics_from_json reads it
// back (missing keys: unknown rates, zero counters).
nlohmann::json metrics_to_json(const TrialMetrics& m);
TrialMetrics metrics_from_json(const nlohmann::json& j);

// A number or null, and back: j[key] when it is a number, else nullopt.
nlohmann::json optional_to_json(const std::optional<double>& v);
std::optional<double> optional_number(const nlohmann::json& j, const char* key);

}  // namespace partune
