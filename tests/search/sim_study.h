// One simulated study (sim_landscape.h) through the real Study, sampler and
// study loop, with a real SQLite store in `dir`: what the test asserts and
// the bench prints.
#pragma once
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "sim_landscape.h"
#include "tuner/search/sampler.h"
#include "tuner/store/store.h"
#include "tuner/study/drive.h"
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

  // The best-so-far ratio at time t (0 before the first healthy result).
  double ratio_at(double t) const {
    double r = 0;
    for (const auto& [time, ratio] : curve)
      if (time <= t) r = ratio;
    return r;
  }
};

inline SimRun run_sim(const std::string& source_dir, const std::string& dir, const std::string& strategy, uint64_t seed,
                      std::optional<double> budget_s = std::nullopt) {
  const Space space = sim_space(source_dir, dir + "/sim.db", strategy, seed);
  const PlanResult planned = plan(space);
  Store store = Store::open(space.study.db_path);
  StudyRow row;
  row.name = space.study.name;
  row.objective = space.study.objective;
  store.ensure_study(row);
  store.add_candidates(space.study.name, planned.candidates);

  SimExecutor executor(seed, space.trial);
  Study study(
      space, planned.candidates, store, std::make_unique<SimMemoryModel>(), [&executor] { return executor.now_s(); },
      budget_s);
  auto sampler = make_sampler(space.search);
  std::ostringstream sink;
  Progress progress(sink, false);
  DriveOptions options;
  options.budget_s = budget_s;

  SimRun run;
  run.candidates = static_cast<int64_t>(planned.candidates.size());
  for (const auto& c : planned.candidates)
    if (Truth t = truth(c); t.healthy) run.best_truth = std::max(run.best_truth, t.mfu);
  run.drive = drive_study(study, *sampler, executor, progress, options);
  run.wall_s = executor.now_s();
  run.counts = executor.counts();
  for (const auto& p : run.drive.curve)
    run.curve.emplace_back(p.time_s, p.best ? truth(study.candidate(*p.best)).mfu / run.best_truth : 0.0);
  if (auto best = study.best()) {
    run.best_id = study.candidate(*best).id;
    run.final_ratio = truth(study.candidate(*best)).mfu / run.best_truth;
  }
  return run;
}

}  // namespace partune::sim
