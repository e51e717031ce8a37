// `tune why ID`: for one candidate, why it is where it is in the study, in
// words: the planner rule that rejected it, the trial whose memory pruned
// it, the memory model's prediction that pruned it, its failure with the log
// lines that show it, why a finished trial is not healthy, or its rank and
// what beat it.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuner/plan/planner.h"
#include "tuner/store/store.h"

namespace partune {

struct WhyInput {
  std::vector<TrialRecord> trials;      // the whole study (store.trials), plan order
  std::vector<RejectedPoint> rejected;  // the space's rejected points; empty without a space
  bool have_space = false;              // whether `rejected` was computed (else a miss says so)
  HealthRule health;                    // the study's rule
  std::string objective = "mfu";        // what the ranking maximises
  std::vector<EventRow> events;         // the trial's events (error lines, retries, prunes)
  std::string log_tail;                 // last lines of the trial's output.log, if any
};

// The trial or rejected point whose id starts with `prefix`: InputError when
// none or more than one match (naming the study and the prefix).
struct WhyTarget {
  const TrialRecord* trial = nullptr;
  const RejectedPoint* rejected = nullptr;
};
WhyTarget find_why_target(const WhyInput& in, const std::string& study, const std::string& prefix);

// The kind of answer, one word: "rejected", "pruned-by-trial",
// "pruned-by-prediction", "pruned", "failed", "unhealthy", "ranked",
// "pending", "running".
std::string why_kind(const WhyInput& in, const WhyTarget& target);

// The explanation as text, first line "<id>: <kind>: <one-line answer>".
std::string explain_why(const WhyInput& in, const WhyTarget& target);

// The same as JSON (`tune why --format json`): id, kind, status, axes, the
// text above, and the facts it rests on (not_run: the search's reason for a
// pending candidate; prediction: the memory model's).
nlohmann::json why_json(const WhyInput& in, const WhyTarget& target);

// The last `lines` non-empty lines of a text file ("" if it cannot be read).
std::string tail_lines(const std::string& path, size_t lines);

}  // namespace partune
