// Samplers: which trial a study runs next, asked one at a time (ask/tell).
//
// A sampler sees the study through StudyView (candidates, their status, the
// memory model's predictions, the clock) and learns from tell(). ask() may be
// called while earlier trials are still outstanding (parallel trial slots):
// it must keep answering with other trials while it has any worth running,
// and says "nothing now" (Wait: ask again after the next tell) apart from
// "finished" (the sampler has nothing more to run).
//
// Every sampler is deterministic: the same candidates, seed and results give
// the same asks. Adding one = one new file + one line in strategy.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tuner/estimate/memory_model.h"
#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {

// How much of a trial to run.
enum class Fidelity {
  Short,    // warm-up plus a few counted steps: a cheap first look
  Full,     // the [trial] steps
  Confirm,  // a full re-run of a top config, to rank by the mean of its runs
};
std::string_view to_string(Fidelity f);  // "short", "full", "confirm"
std::optional<Fidelity> parse_fidelity(std::string_view s);

// What the sampler reads of the study.
class StudyView {
 public:
  virtual ~StudyView() = default;
  virtual size_t size() const = 0;
  virtual const Candidate& candidate(size_t i) const = 0;
  virtual TrialStatus status(size_t i) const = 0;
  // The memory model's current prediction, and the probability that the
  // candidate stays within the headroom (1 when nothing is known).
  virtual MemoryPrediction prediction(size_t i) const = 0;
  virtual double fit_probability(size_t i) const = 0;
  // Whether the study would launch it (the prune-before-launch rule).
  virtual bool predicted_to_fit(size_t i) const = 0;
  virtual double elapsed_s() const = 0;
  virtual std::optional<double> remaining_s() const = 0;  // of the time budget
  virtual const TrialSpec& trial_spec() const = 0;
};

struct TrialRequest {
  size_t index = 0;  // into the view's candidates
  Fidelity fidelity = Fidelity::Full;
  int steps = 0;    // training.steps for this run (warm-up included)
  std::string why;  // the sampler's reason, shown and stored
};

struct Ask {
  enum class Kind { Trial, Wait, Finished };
  Kind kind = Kind::Finished;
  TrialRequest request;  // Kind::Trial
  std::string why;       // Wait / Finished: why
  static Ask trial(TrialRequest r) { return {Kind::Trial, std::move(r), ""}; }
  static Ask wait(std::string why) { return {Kind::Wait, {}, std::move(why)}; }
  static Ask finished(std::string why) { return {Kind::Finished, {}, std::move(why)}; }
};

// What came of a request (or of a trial found finished when a study resumes:
// then request.fidelity is what the store recorded).
struct TrialReport {
  TrialRequest request;
  TrialStatus status = TrialStatus::Done;  // Done, Failed or Pruned (never launched)
  FailureClass failure = FailureClass::None;
  std::string reason;
  TrialMetrics metrics;
  std::optional<double> value;  // the objective, when measured
  bool healthy = false;         // done and within the memory limit (the report's health rule)
  std::vector<double> counted;  // the objective at each counted step, in order
  bool stopped_early = false;
  double wall_s = 0;
  std::optional<double> startup_s;  // process start to the first step, when known
};

// Why a candidate left pending was not run (`tune why`), as the sampler sees
// it at the end of a study.
struct NotRun {
  std::string kind;                              // "layout-set-aside", "memory", "model"
  std::string text;                              // one line
  std::optional<double> predicted, upper, best;  // the objective: model mean, upper bound, best so far
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual Ask ask(const StudyView& view) = 0;
  virtual void tell(const StudyView& view, const TrialReport& report) = 0;
  // Candidate i, which the sampler was told was Pruned (or which it saw
  // pruned), is Pending again: a measured trial recalibrated the memory
  // model, which now predicts it to fit. A sampler that dropped it takes it
  // back. Called after the study's state changed, before the tell() of the
  // trial that caused it. Default: nothing (a sampler that reads the status
  // from the view at every ask needs nothing).
  virtual void restore(const StudyView& /*view*/, size_t /*i*/) {}
  // Called at every counted step of a running trial with the objective values
  // so far; a reason stops the trial (early stopping). Default: never.
  virtual std::optional<std::string> should_stop(const TrialRequest& /*request*/,
                                                 const std::vector<double>& /*counted*/) const {
    return std::nullopt;
  }
  // Whether every trial is a different candidate (grid, random): progress
  // then counts trials against the candidates ("[3/12]").
  virtual bool one_trial_per_candidate() const { return false; }
  // A rough count of the trials still to come, for the ETA; nullopt: one a
  // pending candidate (grid, random).
  virtual std::optional<int64_t> remaining_trials() const { return std::nullopt; }
  // Decisions worth telling the user (a layout set aside, a promotion, the
  // end of exploration), each once; the study prints and stores them.
  virtual std::vector<std::string> take_notes() { return {}; }
  // Why candidate i (pending) was not run; nullopt: nothing to say beyond
  // the order (grid, random).
  virtual std::optional<NotRun> why_not_run(const StudyView& /*view*/, size_t /*i*/) { return std::nullopt; }
};

// The sampler for [search] strategy (strategy_names()); throws
// std::invalid_argument for an unknown name.
std::unique_ptr<Sampler> make_sampler(const SearchSpec& spec);

}  // namespace partune
