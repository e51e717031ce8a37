// One simulated study (sim_landscape.h) through the real Study, sampler and
// study loop, with a real SQLite store in `dir`: what the test asserts and
// the bench prints.
#pragma once
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sim_landscape.h"
#include "tuner/search/sampler.h"
#include "tuner/store/store.h"
#include "tuner/study/drive.h"
#include "tuner/study/estimate.h"
#include "tuner/study/study.h"

namespace partune::sim {

struct SimRun {
  double wall_s = 0;       // simulated clock at the end
  double final_ratio = 0;  // true MFU of the reported best / the best healthy true MFU
  std::string best_id;
  SimCounts counts;
  DriveSummary drive;
  std::vector<std::pair<double, double>> curve;  // (time, ratio of the best so far), after each trial
  int64_t candidates = 0;
  double best_truth = 0;
  std::vector<std::pair<std::string, TrialRequest>> asked;  // candidate id, request
  std::vector<std::string> notes;                           // the sampler's decisions
  size_t max_running = 0;                                   // the most trials at once
  std::map<std::string, TrialMetrics> metrics;              // every done trial's stored metrics, by id
  int64_t pending_predicted_to_fit = 0;                     // at the end: untried candidates the study would launch
  std::map<std::string, Candidate> candidates_by_id;
  StudyEstimate estimate;  // what `tune plan` would have said before the study (the trial cost as it measured)

  // The best-so-far ratio at time t (0 before the first healthy result).
  double ratio_at(double t) const {
    double r = 0;
    for (const auto& [time, ratio] : curve)
      if (time <= t) r = ratio;
    return r;
  }
};

// Forwards to a sampler and records what it asked for and decided.
class RecordingSampler : public Sampler {
 public:
  explicit RecordingSampler(std::unique_ptr<Sampler> inner) : inner_(std::move(inner)) {}
  Ask ask(const StudyView& view) override {
    Ask a = inner_->ask(view);
    if (a.kind == Ask::Kind::Trial) asked.emplace_back(view.candidate(a.request.index).id, a.request);
    return a;
  }
  void tell(const StudyView& view, const TrialReport& report) override { inner_->tell(view, report); }
  bool one_trial_per_candidate() const override { return inner_->one_trial_per_candidate(); }
  std::optional<int64_t> remaining_trials() const override { return inner_->remaining_trials(); }
  std::optional<std::string> should_stop(const TrialRequest& request,
                                         const std::vector<double>& counted) const override {
    return inner_->should_stop(request, counted);
  }
  std::optional<NotRun> why_not_run(const StudyView& view, size_t i) override { return inner_->why_not_run(view, i); }
  std::vector<std::string> take_notes() override {
    auto n = inner_->take_notes();
    notes.insert(notes.end(), n.begin(), n.end());
    return n;
  }
  std::vector<std::pair<std::string, TrialRequest>> asked;
  std::vector<std::string> notes;

 private:
  std::unique_ptr<Sampler> inner_;
};

struct SimOptions {
  std::optional<double> budget_s;
  std::optional<int64_t> max_trials;
  std::optional<uint64_t> shuffle_seed;  // of the axis values; default: the seed
  int slots = 1;                         // trials at once
  Landscape landscape = current();
};

// Runs the simulated study, or resumes it when `dir` holds it already.
inline SimRun run_sim(const std::string& source_dir, const std::string& dir, const std::string& strategy, uint64_t seed,
                      const SimOptions& o = {}) {
  const std::optional<double> budget_s = o.budget_s;
  const Space space = sim_space(source_dir, dir + "/sim.db", strategy, seed, o.shuffle_seed);
  const PlanResult planned = plan(space);
  Store store = Store::open(space.study.db_path);
  StudyRow row;
  row.name = space.study.name;
  row.objective = space.study.objective;
  store.ensure_study(row);
  store.add_candidates(space.study.name, planned.candidates);

  SimExecutor executor(seed, space.trial, o.slots, o.landscape);
  Study study(
      space, planned.candidates, store, std::make_unique<SimMemoryModel>(o.landscape),
      [&executor] { return executor.now_s(); }, budget_s);
  RecordingSampler sampler(make_sampler(space.search));
  std::ostringstream sink;
  Progress progress(sink, false);
  DriveOptions options;
  options.budget_s = budget_s;
  options.max_trials = o.max_trials;

  SimRun run;
  run.candidates = static_cast<int64_t>(planned.candidates.size());
  for (const auto& c : planned.candidates) run.candidates_by_id[c.id] = c;
  for (const auto& c : planned.candidates)
    if (Truth t = truth(c, o.landscape); t.healthy) run.best_truth = std::max(run.best_truth, t.mfu);
  run.drive = drive_study(study, sampler, executor, progress, options);
  run.estimate = estimate_study_cost(space, planned, SimMemoryModel(o.landscape),
                                     measured_trial_cost(store.trials(space.study.name), space.trial));
  for (size_t i = 0; i < study.size(); ++i)
    run.pending_predicted_to_fit += study.status(i) == TrialStatus::Pending && study.predicted_to_fit(i);
  run.asked = sampler.asked;
  run.notes = sampler.notes;
  run.wall_s = executor.now_s();
  run.counts = executor.counts();
  run.max_running = executor.max_running();
  for (const auto& r : store.trials(space.study.name))
    if (r.status == TrialStatus::Done) run.metrics[r.id] = r.metrics;
  for (const auto& p : run.drive.curve)
    run.curve.emplace_back(p.time_s, p.best ? truth(study.candidate(*p.best), o.landscape).mfu / run.best_truth : 0.0);
  if (auto best = study.best()) {
    run.best_id = study.candidate(*best).id;
    run.final_ratio = truth(study.candidate(*best), o.landscape).mfu / run.best_truth;
  }
  return run;
}

}  // namespace partune::sim
