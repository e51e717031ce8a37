// The trial executor: the seam between the study loop and what runs a
// trial. The real one starts processes (process_executor.h); a simulated one
// (tests, bench) answers from a landscape with a simulated clock. The study
// loop (drive.h) cannot tell them apart.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
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

// Trials run in slots: slots() of them at once. The loop start()s a trial
// while a slot is free and wait_any()s for the next one to end. An executor
// with one slot may implement run() only: start() keeps the trial and
// wait_any() runs it. The study loop calls everything from one thread; an
// executor that runs trials on threads of its own calls `stop` with the loop
// blocked in wait_any (never while the loop is running anything else).
class TrialExecutor {
 public:
  virtual ~TrialExecutor() = default;
  // Seconds since the executor began: the clock of the time budget.
  virtual double now_s() const = 0;
  // The trial's folder ("" when it has none), recorded before it starts.
  virtual std::string log_dir(const Candidate& c) const = 0;
  // How many trials may run at once now (>= 1; 0 while every slot is left
  // out, e.g. its Slurm node is down).
  virtual int slots() const { return 1; }
  // Starts a trial in a free slot; `ticket` names it in wait_any's answer.
  virtual void start(size_t ticket, const Candidate& c, const TrialRequest& request, StopCheck stop) {
    queued_.push_back({ticket, &c, request, std::move(stop)});
  }
  // Blocks until a started trial ends: its ticket and outcome.
  virtual std::pair<size_t, TrialOutcome> wait_any() {
    Queued q = std::move(queued_.front());
    queued_.erase(queued_.begin());
    return {q.ticket, run(*q.candidate, q.request, q.stop)};
  }
  // One trial, start to end (the one-slot executors' way).
  virtual TrialOutcome run(const Candidate& c, const TrialRequest& request, const StopCheck& stop) = 0;

 private:
  struct Queued {
    size_t ticket;
    const Candidate* candidate;
    TrialRequest request;
    StopCheck stop;
  };
  std::vector<Queued> queued_;
};

}  // namespace partune
