// The vocabulary every part of the tuner shares: candidates, trial status,
// failure classes, step rows and summary metrics. Plain data, no behaviour
// beyond naming.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/job_config.h"

namespace partune {

// One point of the search space: the axis values and the full job config
// (base merged with the axes). `id` is the hash of the canonical config.
struct Candidate {
  std::string id;
  std::map<std::string, Value> axes;  // every axis key -> value (canonicalised)
  JobConfig config;                   // full trial job config
};

enum class TrialStatus { Pending, Running, Done, Failed, Pruned };
enum class FailureClass { None, Oom, Hang, Timeout, Crash, Nccl, Error };

std::string_view to_string(TrialStatus s);   // "pending", "running", "done", "failed", "pruned"
std::string_view to_string(FailureClass f);  // "" for None, else "oom", "hang", "timeout", "crash", "nccl", "error"
std::optional<TrialStatus> parse_trial_status(std::string_view s);
std::optional<FailureClass> parse_failure_class(std::string_view s);  // "" -> None

// One logged training step as printed on a step line (rank 0's line, or the
// metrics file). Optional fields were absent from the line.
struct StepRow {
  int64_t step = 0;
  std::optional<double> loss;
  std::optional<double> grad_norm;
  std::optional<double> memory_gib;
  std::optional<double> memory_pct;
  std::optional<double> tps;
  std::optional<double> tflops;
  std::optional<double> mfu;  // percent, as printed
};

// A trial's summary: medians over counted steps (step > warmup_steps), peak
// memory over all logged steps, total allocation retries.
struct TrialMetrics {
  std::optional<double> mfu;
  std::optional<double> tps;
  std::optional<double> tflops;
  std::optional<double> memory_gib;
  std::optional<double> memory_pct;
  int64_t alloc_retries = 0;
  int64_t oom_errors = 0;
  int64_t counted_steps = 0;
};

}  // namespace partune
