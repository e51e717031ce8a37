// The trial executor: the seam between the study loop and what runs a
// trial. The real one starts processes (process_executor.h); a simulated one
// (tests, bench) answers from a landscape with a simulated clock. The study
// loop (drive.h) cannot tell them apart.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tuner/search/sampler.h"
#include "tuner/trial/trial.h"

namespace partune {

struct TrialOutcome {
  TrialStatus status = TrialStatus::Done;  // Done or Failed
  FailureClass failure = FailureClass::None;
  std::string reason;
  TrialMetrics metrics;
  std::vector<double> counted;  // the objective at each counted step
  bool stopped_early = false;   // ended by the stop check (reason says why)
  double wall_s = 0;
  std::optional<double> startup_s;          // start to the first step
  std::optional<double> host_peak_rss_gib;  // the trainer's own report
};

// Given the objective values of the counted steps so far, a reason to stop
// the trial now, or nullopt.
using StopCheck = std::function<std::optional<std::string>(const std::vector<double>& counted)>;

class TrialExecutor {
 public:
  virtual ~TrialExecutor() = default;
  // Seconds since the executor began: the clock of the time budget.
  virtual double now_s() const = 0;
  // The trial's folder ("" when it has none), recorded before it starts.
  virtual std::string log_dir(const Candidate& c) const = 0;
  virtual TrialOutcome run(const Candidate& c, const TrialRequest& request, const StopCheck& stop) = 0;
};

}  // namespace partune
