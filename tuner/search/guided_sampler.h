// guided (the default strategy): model-guided, multi-fidelity.
//
//   1. Probes: one short trial per layout (the layout's smallest batch and
//      sequence, the lightest activation checkpointing predicted to fit),
//      layouts in a seeded order. A hang, crash, NCCL failure or timeout there
//      sets the whole layout aside, with a reason.
//   2. Frontier probes: then one short trial per layout on its memory
//      frontier (per AC x seq, the largest batch predicted to fit), the
//      frontier point the model ranks highest.
//   3. Exploration: a throughput model (throughput_model.h: main effects
//      plus a Gaussian process on their residuals) fitted on every healthy
//      result; the next short trial is the candidate with the largest
//      expected improvement over the best so far, its spread the model's
//      own combined with its measured leave-one-out error (wider on the
//      frontier), times the probability that it fits in memory. With a time
//      budget only the budget ends it: it pauses to keep what confirming the
//      contenders costs and resumes when they are confirmed. Without one it
//      ends when no candidate expects to improve the best by more than 0.2%
//      and no frontier point's upper bound reaches the best (patience is a
//      backstop).
//   4. Promotion: a short result within 3% of the best known is re-run at
//      the full step count before anything new (successive halving with one
//      rung); a full run whose counted steps are clearly below the best is
//      stopped early (should_stop).
//   5. Confirmation: the top k full results are re-run once more; the study
//      ranks them by the mean of their runs and reports the spread. The
//      first two, when closer than twice the standard error of their means,
//      get more runs (up to max_confirm_runs).
//
// Nothing depends on the order of candidates or axis values: every choice is
// by value, ties broken by a hash of the candidate id and the seed.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <set>

#include "tuner/search/sampler.h"
#include "tuner/search/throughput_model.h"

namespace partune {

struct GuidedOptions {
  uint64_t seed = 0;
  int short_counted_steps = 3;     // counted steps of a short trial
  int confirm_top_k = 3;           // re-run the top k at the end
  int max_confirm_runs = 4;        // full runs of a config at most, when the first two are too close to call
  double promote_margin = 0.03;    // promote a short result within this of the best
  double min_improvement = 0.002;  // stop exploring below this expected gain (relative)
  // The least error the throughput model is credited with (log scale), on
  // top of its own uncertainty: a linear model of log throughput fitted on a
  // handful of points can be confidently wrong (one H200: a 4% better
  // config was never tried when only the fitted uncertainty counted).
  // Until the model's error is measured (ResidualModel::kMinForError
  // results), this is its error; after, the measured leave-one-out error,
  // at least min_model_error.
  double model_misfit = 0.05;
  double min_model_error = 0.01;
  // A memory-frontier candidate's spread is this times the model's: the
  // fall past memory pressure is where the model knows least.
  double frontier_spread = 1.5;
  double exclude_sigmas = 2.0;  // a candidate whose mean + this many sds is below the best is excluded
  int patience = 40;            // without a budget: trials without a 0.5% gain before exploration stops
  double stop_sigmas = 3.0;     // early stop: mean + this many standard errors below the best
};

class GuidedSampler : public Sampler {
 public:
  explicit GuidedSampler(GuidedOptions options) : opt_(options) {}
  Ask ask(const StudyView& view) override;
  void tell(const StudyView& view, const TrialReport& report) override;
  // A candidate pruned by the memory model's prediction that fits after a
  // recalibration: it counts as healthy again, the frontier is recomputed
  // and its layout gets the probes it lost (a layout set aside because
  // nothing of it was predicted to fit is probed; a layout whose frontier
  // probe is done gets another on the new frontier), and exploration, if it
  // ended, looks again (patience, if spent, ends it again).
  void restore(const StudyView& view, size_t i) override;
  std::optional<std::string> should_stop(const TrialRequest& request,
                                         const std::vector<double>& counted) const override;
  std::vector<std::string> take_notes() override;
  std::optional<NotRun> why_not_run(const StudyView& view, size_t i) override;
  std::optional<int64_t> remaining_trials() const override;

 private:
  struct Layout {
    std::string key;
    std::vector<size_t> members;
    bool probed = false;
    bool frontier_probed = false;
    int measured = 0;       // members with a result
    std::string set_aside;  // reason, when set aside
  };
  struct State {
    std::optional<double> short_value;
    std::vector<double> full_values;  // full and confirm runs
    bool healthy = true;              // false once a run was over the memory limit
    bool promoted = false;
    bool confirmed = false;
    bool stopped_early = false;
    bool measured = false;  // a result (done or failed) came
  };

  void init(const StudyView& view);
  std::optional<TrialRequest> next_probe(const StudyView& view);
  std::optional<TrialRequest> next_promotion(const StudyView& view);
  std::optional<TrialRequest> next_frontier_probe(const StudyView& view);
  std::optional<TrialRequest> next_explore(const StudyView& view);
  std::optional<TrialRequest> next_confirm(const StudyView& view);
  void refit(const StudyView& view);
  double model_error() const;                                   // the error the model is credited with (log scale)
  std::vector<size_t> contenders(const StudyView& view) const;  // the top-k full results worth confirming
  int unconfirmed_contenders(const StudyView& view) const;
  double run_to_run_sd() const;  // relative, of a full run
  TrialRequest request(const StudyView& view, size_t i, Fidelity f, std::string why);
  double known_value(size_t i) const;  // the best estimate measured so far; -inf: none
  double best_known() const;
  uint64_t tie(size_t i) const;

  GuidedOptions opt_;
  bool initialised_ = false;
  std::unique_ptr<ThroughputModel> model_;
  bool model_stale_ = true;
  std::vector<Layout> layouts_;  // in probe order
  std::vector<size_t> layout_of_;
  std::vector<State> state_;
  std::vector<std::string> ids_;
  std::set<size_t> outstanding_;
  std::vector<size_t> promotions_;  // queued, in order
  bool exploring_done_ = false;
  bool ended_by_budget_ = false;  // exploration cut short to confirm within the budget
  bool budget_noted_ = false;
  std::vector<bool> frontier_;  // candidate -> on the memory frontier (refit)
  int since_gain_ = 0;
  double gain_mark_ = 0;  // best value at the last 0.5% gain
  double step_rel_sd_sum_ = 0;
  int step_rel_sd_n_ = 0;
  double short_cost_sum_ = 0, full_cost_sum_ = 0;
  int short_cost_n_ = 0, full_cost_n_ = 0;
  std::vector<std::string> notes_;
};

}  // namespace partune
