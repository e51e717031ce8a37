#include "tuner/cli/plan_output.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "tuner/estimate/memory_model.h"
#include "tuner/study/estimate.h"

namespace partune {

namespace {

struct Predicted {
  MemoryPrediction p;
  std::optional<bool> fits;  // nullopt: capacity unknown
};

struct Predictions {
  std::vector<Predicted> rows;
  std::optional<double> capacity_gib;
  StudyEstimate estimate;
  bool measured_cost = false;  // trial cost from the study's own finished trials
};

// The trial cost a study's database shows, when it exists and has finished trials.
std::optional<TrialCost> measured_cost(const Space& space) {
  // No database yet (an empty file is none either: `tune run` makes one there).
  std::error_code ec;
  if (!std::filesystem::exists(space.study.db_path, ec) || std::filesystem::is_empty(space.study.db_path, ec))
    return std::nullopt;
  Store store = Store::open(space.study.db_path, Store::Mode::Existing);
  if (!store.study(space.study.name)) return std::nullopt;
  const std::vector<TrialRecord> trials = store.trials(space.study.name);
  for (const auto& t : trials)
    if (t.status == TrialStatus::Done && t.source == "tune") return measured_trial_cost(trials, space.trial);
  return std::nullopt;
}

Predictions predict_all(const Space& space, const PlanResult& plan) {
  Predictions out;
  const std::unique_ptr<MemoryModel> model = make_memory_model(space);
  out.capacity_gib = device_memory_gib(space);
  for (const Candidate& c : plan.candidates) {
    Predicted r{model->predict(c.config), std::nullopt};
    if (out.capacity_gib) r.fits = predicted_to_fit(r.p, *out.capacity_gib, space.prune.memory_headroom);
    out.rows.push_back(r);
  }
  const std::optional<TrialCost> cost = measured_cost(space);
  out.measured_cost = cost.has_value();
  out.estimate = estimate_study_cost(space, plan, *model, cost.value_or(TrialCost{}));
  return out;
}

}  // namespace

nlohmann::json plan_output_json(const Space& space, const PlanResult& plan) {
  nlohmann::json j = plan_to_json(plan);
  const Predictions pred = predict_all(space, plan);
  for (size_t i = 0; i < pred.rows.size(); ++i) {
    const Predicted& r = pred.rows[i];
    j["candidates"][i]["predicted"] = {
        {"memory_gib", r.p.known ? nlohmann::json(r.p.memory_gib) : nlohmann::json(nullptr)},
        {"fits", r.fits ? nlohmann::json(*r.fits) : nlohmann::json(nullptr)},
        {"verified", r.p.known && r.p.verified},
        {"regime", r.p.regime}};
  }
  j["estimate"] = {{"trials", pred.estimate.trials},
                   {"seconds", pred.estimate.seconds},
                   {"trials_min", pred.estimate.trials_min},
                   {"seconds_min", pred.estimate.seconds_min}};
  return j;
}

std::string plan_output_table(const Space& space, const PlanResult& plan) {
  const Predictions pred = predict_all(space, plan);
  PlanColumn memory{"predicted", {}}, fits{"fits", {}};
  int64_t fit = 0;
  for (const Predicted& r : pred.rows) {
    memory.cells.push_back(r.p.known ? gib_text(r.p.memory_gib) : "?");
    fits.cells.push_back(!r.fits ? "?" : *r.fits ? "yes" : "no");
    if (r.fits && *r.fits) ++fit;
  }
  std::vector<std::string> footer;
  char line[256];
  if (pred.capacity_gib) {
    std::snprintf(line, sizeof line, "memory: %lld of %zu candidates predicted to fit under %.0f%% of %s",
                  static_cast<long long>(fit), pred.rows.size(), 100.0 * space.prune.memory_headroom,
                  gib_text(*pred.capacity_gib).c_str());
  } else {
    std::snprintf(line, sizeof line,
                  "memory: device memory unknown until the first trial; set [hardware] memory_gib to judge fits now");
  }
  footer.push_back(line);
  if (pred.capacity_gib)
    footer.push_back(
        "memory: fits are point estimates, unverified until a trial of the candidate's regime (depth, memory mode, "
        "TP, EP) has run; the study then adds a 2-sigma margin there (docs/memory-model.md)");
  const StudyEstimate& e = pred.estimate;
  const std::string trials = e.trials_min == e.trials
                                 ? std::to_string(e.trials)
                                 : std::to_string(e.trials_min) + " to " + std::to_string(e.trials);
  char hours[64];
  if (space.search.time_budget_s && e.seconds_min == *space.search.time_budget_s)
    std::snprintf(hours, sizeof hours, "%.1f h (the time budget)", e.seconds / 3600.0);
  else if (e.seconds_min == e.seconds)
    std::snprintf(hours, sizeof hours, "%.1f h", e.seconds / 3600.0);
  else
    std::snprintf(hours, sizeof hours, "%.1f to %.1f h", e.seconds_min / 3600.0, e.seconds / 3600.0);
  // Guided gives a range: where its exploration stops depends on what the trials measure.
  std::snprintf(line, sizeof line, "estimate: %s trials, %s of trials under the %s strategy (trial cost %s)",
                trials.c_str(), hours, space.search.strategy.c_str(),
                pred.measured_cost ? "measured by this study's trials" : "a default guess until trials run");
  footer.push_back(line);
  return plan_to_table(plan, space, {memory, fits}, footer);
}

}  // namespace partune
