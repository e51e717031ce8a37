// What a running study shows its user. On a terminal: one status line,
// rewritten in place (trial i of N, its config, current step, live MFU and
// memory, best so far, ETA). Elsewhere (a log file, CI): one plain line per
// event, so nothing depends on carriage returns.
#pragma once
#include <algorithm>
#include <chrono>
#include <optional>
#include <ostream>
#include <string>

#include "tuner/trial/trial.h"

namespace partune {

class Progress {
 public:
  Progress(std::ostream& out, bool live) : out_(out), live_(live) {}

  void study_start(const std::string& study, int64_t candidates, int64_t finished, int64_t to_run);
  // total 0: no known total ("[7]" rather than "[7/12]").
  void trial_start(int64_t index, int64_t total, const Candidate& c, int attempt, int steps);
  // `trial_id`: which trial, when several run at once ("": the one started last).
  void step(const StepRow& row, const std::string& trial_id = "");
  void trial_end(const Candidate& c, TrialStatus status, FailureClass failure, const std::string& reason,
                 const TrialMetrics& m, double wall_s);
  void pruned(const std::string& id, const std::string& reason);
  void note(const std::string& message);
  void best(const std::string& id, double value, const std::string& objective);
  // Remaining trials, for the ETA (mean wall time of the trials run so far).
  void remaining(int64_t n) { remaining_ = n; }
  // What is left of the time budget: the ETA is never past it.
  void budget_left(std::optional<double> s) { budget_left_ = s; }
  // Trials running at once: the ETA divides by it.
  void parallel(int n) { parallel_ = std::max(1, n); }
  // The study's status after a trial (elapsed, budget, counts), with the best
  // so far and the ETA: a line of its own on a terminal and in plain mode.
  void status(const std::string& line);

 private:
  void redraw();
  void clear_live_line();
  std::string eta() const;

  std::ostream& out_;
  bool live_;
  std::string trial_label_;
  int steps_ = 0;
  std::optional<StepRow> last_step_;
  std::string best_;
  int64_t remaining_ = 0;
  std::optional<double> budget_left_;
  double trial_wall_sum_ = 0;
  int64_t trials_timed_ = 0;
  bool line_open_ = false;
  int parallel_ = 1;
};

// "TP=2 EP=4 lbs=8 seq=8192 AC=selective": the axes, short names.
std::string describe_axes(const std::map<std::string, Value>& axes);

}  // namespace partune
