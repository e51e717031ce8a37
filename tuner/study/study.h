// The Study: every candidate's trial state, held in memory. Loaded from the
// Store once when a run starts and written through as things happen, so the
// study loop asks the database nothing per candidate (the runner before it
// issued a SELECT per candidate per trial: ~650k queries for 810 candidates).
//
// It is the StudyView samplers read (status, memory predictions, the clock),
// applies the memory rules (prune before launch by the memory model's
// prediction; after a trial over the limit, prune what needs at least as
// much memory), and keeps the runs of multi-fidelity trials: a short run, then
// full runs (a confirmation is one more), their mean stored as the trial's
// metrics and the runs in the trial's facts ("search").
//
// Every launch and result is journalled (record.h). A resumed study starts
// the journalled trials as never run and replays the journal (replay.h) with
// the Study "dry" (nothing written), so its state, memory model included,
// grows in the order things happened; sync_store then mends the rows a kill
// left behind, and the study goes on live.
//
// A prune by the memory model's prediction is not for good: after each
// measured trial recalibrates the model, every candidate pruned by a
// prediction (not by a measured trial) that is now predicted to fit is
// pending again (Finished::unpruned; an 'unprune' event). Candidates pruned
// by a prediction start a resumed study pending, like the journalled
// trials: the replay prunes and un-prunes them where the interrupted study
// did.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tuner/estimate/memory_model.h"
#include "tuner/prune/pruner.h"
#include "tuner/search/sampler.h"
#include "tuner/space/space.h"
#include "tuner/store/store.h"
#include "tuner/study/executor.h"

namespace partune {

struct StudyCounts {
  int64_t pending = 0, running = 0, done = 0, failed = 0, pruned = 0;
  int64_t predicted_to_fit = 0;  // pending candidates the study would launch
};

class Study : public StudyView {
 public:
  // `candidates` must be in the store already (Store::add_candidates).
  // `clock`: seconds since this run began; `budget_s`: the time budget.
  // `replayed`: ids of trials that start as never run, whatever the store
  // holds (their journal is replayed into the Study, dry).
  Study(const Space& space, std::vector<Candidate> candidates, Store& store, std::unique_ptr<MemoryModel> memory,
        std::function<double()> clock, std::optional<double> budget_s, const std::set<std::string>& replayed = {});

  // StudyView
  size_t size() const override { return candidates_.size(); }
  const Candidate& candidate(size_t i) const override { return candidates_[i]; }
  TrialStatus status(size_t i) const override { return state_[i].status; }
  MemoryPrediction prediction(size_t i) const override;
  double fit_probability(size_t i) const override;
  bool predicted_to_fit(size_t i) const override;
  double elapsed_s() const override { return clock_(); }
  std::optional<double> remaining_s() const override;
  const TrialSpec& trial_spec() const override { return space_.trial; }

  int attempt(size_t i) const { return state_[i].attempt; }
  const std::string& objective() const { return space_.study.objective; }
  std::optional<double> capacity_gib() const { return capacity_; }
  // Why the memory model says no (prune_reason), for a candidate that does not fit.
  std::string prune_reason(size_t i) const;

  // What the store held when the run started, as reports (resume, warm start).
  std::vector<TrialReport> history() const;

  // Keeps the sampler's reason for not running pending candidate i in its
  // facts_json.not_run (`tune why`).
  void record_not_run(size_t i, const NotRun& why);
  // Dry: nothing is written to the store (the journal's replay).
  void set_dry(bool dry) { dry_ = dry; }
  bool dry() const { return dry_; }

  // A launch, journalled (the 2-argument form: a full run of [trial] steps).
  void mark_running(size_t i, const std::string& log_dir, const TrialRequest& request);
  void mark_running(size_t i, const std::string& log_dir);
  // A launch whose result never came (its tune was killed): back to what the
  // trial was before it.
  void interrupted(size_t i);
  // After a replay: writes the replayed state of each replayed trial the
  // store disagrees with (a trial a kill left pending or running although
  // its result is journalled, e.g. during a confirmation run or a
  // production check). Returns how many rows it mended.
  int64_t sync_store();
  // A candidate back from a prune by prediction: the prediction that pruned
  // it and the recalibrated one.
  struct Unpruned {
    size_t index = 0;
    double was_gib = 0, now_gib = 0;
  };
  struct Finished {
    TrialReport report;
    std::vector<PruneDecision> pruned;  // what this trial's memory pruned
    std::vector<Unpruned> unpruned;     // what its recalibration brought back, in plan order
  };
  Finished finish(size_t i, const TrialRequest& request, const TrialOutcome& outcome);
  // A pending candidate set aside before launch; false if it was not pending.
  bool prune(size_t i, const std::string& reason, const std::string& caused_by = "");
  void event(const std::string& kind, const std::string& message, const std::optional<size_t>& trial = {});

  StudyCounts counts() const;
  // The best healthy done trial by the objective, as `tune best` ranks.
  std::optional<size_t> best() const;
  std::optional<double> value(size_t i) const;  // the objective of the stored metrics

 private:
  struct State {
    TrialStatus status = TrialStatus::Pending;
    TrialStatus before_launch = TrialStatus::Pending;
    FailureClass failure = FailureClass::None;
    std::string reason, pruned_by;
    double wall_s = 0;
    TrialMetrics metrics;
    int attempt = 0;
    bool replayed = false;
    std::optional<double> short_value;
    std::vector<TrialMetrics> full_runs;
    TrialRequest last_request;  // of the latest result
    std::string stopped_early;  // its reason, when the latest run was stopped early
    double pruned_at_gib = 0;   // the prediction when it was pruned by one
    // Un-prunes during the journal's replay, and the latest one's event, for
    // sync_store to write if the kill came before the interrupted study did.
    int64_t unpruned_dry = 0;
    std::string unprune_message;
    nlohmann::json unprune_data;
  };
  // The 'unprune' events the store holds for a trial.
  int64_t unprune_events(const std::string& id);
  // Pruned by the memory model's prediction (not by a measured trial).
  bool pruned_by_prediction(size_t i) const;
  // After trial i's measurement recalibrated the model: the candidates
  // pruned by prediction that now fit, back to pending.
  std::vector<Unpruned> unprune_fitting(size_t i);
  // facts_json.search: the latest run's request, the short result, the full
  // runs, their mean and spread.
  nlohmann::json search_facts(size_t i) const;
  bool healthy(const TrialMetrics& m, FailureClass f, TrialStatus s) const;
  void observe_memory(size_t i, const TrialMetrics& m);
  // Keeps the memory model's prediction for candidate i as it stands now (at
  // launch, or when pruned) in its facts_json.prediction, so the report can
  // set it against the measured peak and `tune why` can quote it.
  void record_prediction(size_t i);

  const Space& space_;
  std::vector<Candidate> candidates_;
  Store& store_;
  std::unique_ptr<MemoryModel> memory_;
  std::function<double()> clock_;
  std::optional<double> budget_s_;
  std::optional<double> capacity_;
  HealthRule limit_;
  std::vector<State> state_;
  bool dry_ = false;
  mutable std::vector<std::optional<MemoryPrediction>> predictions_;
};

}  // namespace partune
