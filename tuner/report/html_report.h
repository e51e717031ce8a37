// `tune report`: the morning report, one self-contained HTML file (inline
// CSS and SVG, no script, no external reference) that can be mailed or
// opened from disk. Sections: summary (the best healthy config, its exported
// TOML, the top k with the mean and spread of repeated runs), the objective
// against peak memory, per-axis effects, the study over time, predicted
// against measured memory, and every pruned, failed or rejected candidate
// grouped by reason. Layout and the choice of SVG: docs/report.md.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tuner/plan/planner.h"
#include "tuner/store/store.h"

namespace partune {

struct ReportInput {
  StudyRow study;
  std::string db_path;
  std::vector<TrialRecord> trials;      // plan order
  std::vector<EventRow> events;         // the study's events (prune times)
  std::vector<RejectedPoint> rejected;  // the planner's rejected points (with a space)
  bool have_space = false;              // whether `rejected` was computed
  std::vector<std::string> axis_keys;   // the space's axes in its order (else from the trials)
  std::string objective = "mfu";
  size_t top = 10;
  std::string generated_at;  // ISO 8601 UTC
};

// The plotted-point classes of the objective-against-memory chart, from the
// study's health rule: "healthy", "over-headroom", "retries", "oom",
// "failed", "stopped" (pruned after running).
std::string outcome_class(const TrialRecord& r, const HealthRule& rule);

// Where a trial sits on the memory axis of the objective-against-memory
// chart: it ran to an end (done, failed, or pruned after running) and
// reported peak memory, or, for one that died before its first step line
// (an OOM at step 1), the memory the model predicted at its launch
// (`predicted` set). nullopt: not plotted.
std::optional<double> chart_memory_gib(const TrialRecord& r, bool* predicted = nullptr);

std::string html_report(const ReportInput& in);

}  // namespace partune
