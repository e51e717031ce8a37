#include "tuner/study/study.h"

#include <cmath>
#include <map>

#include "tuner/report/report.h"
#include "tuner/study/record.h"
#include "tuner/trial/run_metrics.h"

namespace partune {

namespace {

// A prune reason of the memory model (prediction_prune_reason), not of a
// measured trial.
bool prediction_reason(const std::string& reason, const std::string& pruned_by) {
  return pruned_by.empty() && is_prediction_prune_reason(reason);
}

// The 'unprune' event's message and data.
std::string unprune_message(const Study::Unpruned& u, bool known, const std::string& caused_by) {
  return (known ? "now predicted " + gib_text(u.now_gib) : std::string("the memory model no longer speaks for it")) +
         " (was " + gib_text(u.was_gib) + " when pruned) after trial " + caused_by + " recalibrated the memory model";
}

}  // namespace

Study::Study(const Space& space, std::vector<Candidate> candidates, Store& store, std::unique_ptr<MemoryModel> memory,
             std::function<double()> clock, std::optional<double> budget_s, const std::set<std::string>& replayed)
    : space_(space),
      candidates_(std::move(candidates)),
      store_(store),
      memory_(std::move(memory)),
      clock_(std::move(clock)),
      budget_s_(budget_s),
      capacity_(device_memory_gib(space)),
      limit_(space.prune),
      state_(candidates_.size()),
      predictions_(candidates_.size()) {
  // One read of the whole study.
  std::map<std::string, TrialRecord> records;
  for (auto& r : store_.trials(space_.study.name)) records.emplace(r.id, std::move(r));
  for (size_t i = 0; i < candidates_.size(); ++i) {
    auto it = records.find(candidates_[i].id);
    if (it == records.end()) continue;
    const TrialRecord& r = it->second;
    State& s = state_[i];
    s.attempt = r.attempt;
    if (replayed.count(r.id) || (r.status == TrialStatus::Pruned && prediction_reason(r.reason, r.pruned_by))) {
      // A journalled trial, or one pruned by a prediction: the replay makes
      // its state (the loop's prunes and un-prunes, in order); sync_store
      // then compares it with this row.
      s.replayed = true;
      continue;
    }
    s.status = r.status;
    s.failure = r.failure;
    s.metrics = r.metrics;
    s.reason = r.reason;
    s.pruned_by = r.pruned_by;
    s.wall_s = r.wall_s.value_or(0);
    const nlohmann::json search = r.facts.contains("search") ? r.facts["search"] : nlohmann::json::object();
    s.short_value = optional_number(search, "short");
    if (search.contains("runs") && search["runs"].is_array())
      for (const auto& run : search["runs"]) s.full_runs.push_back(metrics_from_json(run));
    else if (r.status == TrialStatus::Done && search.value("fidelity", std::string("full")) != "short")
      s.full_runs.push_back(r.metrics);  // a run of grid, random or ingest: one full run
    if (r.status == TrialStatus::Done) observe_memory(i, r.metrics);
  }
}

void Study::observe_memory(size_t i, const TrialMetrics& m) {
  if (!m.memory_gib) return;
  if (!capacity_ && m.memory_pct && *m.memory_pct > 0) capacity_ = *m.memory_gib * 100.0 / *m.memory_pct;
  memory_->observe(candidates_[i].config, *m.memory_gib);
  for (auto& p : predictions_) p.reset();
}

MemoryPrediction Study::prediction(size_t i) const {
  if (!predictions_[i]) predictions_[i] = memory_->predict(candidates_[i].config);
  return *predictions_[i];
}

double Study::fit_probability(size_t i) const {
  if (!capacity_) return 1.0;
  const MemoryPrediction p = prediction(i);
  if (p.memory_gib <= 0) return 1.0;  // the model knows nothing of it
  const double limit = space_.prune.memory_headroom * *capacity_;
  if (p.sigma_gib <= 0) return p.memory_gib <= limit ? 1.0 : 0.0;
  return 0.5 * std::erfc(-(limit - p.memory_gib) / (p.sigma_gib * std::sqrt(2.0)));
}

bool Study::predicted_to_fit(size_t i) const {
  if (!capacity_ || !space_.prune.before_launch) return true;
  return partune::predicted_to_fit(prediction(i), *capacity_, space_.prune.memory_headroom);
}

std::string Study::prune_reason(size_t i) const {
  return capacity_ ? prediction_prune_reason(prediction(i), *capacity_, space_.prune.memory_headroom) : "";
}

std::optional<double> Study::remaining_s() const {
  if (!budget_s_) return std::nullopt;
  return std::max(0.0, *budget_s_ - clock_());
}

bool Study::healthy(const TrialMetrics& m, FailureClass f, TrialStatus s) const {
  return s == TrialStatus::Done && !over_memory_limit(f, m, limit_);
}

std::optional<double> Study::value(size_t i) const {
  return objective_metric(state_[i].metrics, space_.study.objective);
}

std::vector<TrialReport> Study::history() const {
  std::vector<TrialReport> out;
  for (size_t i = 0; i < state_.size(); ++i) {
    const State& s = state_[i];
    if (s.status == TrialStatus::Running) continue;
    // A trial reset to pending (its tune was killed) keeps its short result.
    if (s.status == TrialStatus::Pending && !s.short_value) continue;
    TrialReport r;
    r.request.index = i;
    r.request.fidelity = Fidelity::Full;
    r.status = s.status;
    r.failure = s.failure;
    if (s.short_value) {
      TrialReport sr = r;
      sr.request.fidelity = Fidelity::Short;
      sr.status = TrialStatus::Done;
      sr.failure = FailureClass::None;
      sr.value = s.short_value;
      sr.healthy = true;
      out.push_back(sr);
    }
    if (s.status == TrialStatus::Pending) continue;
    if (s.status != TrialStatus::Done) {
      r.metrics = s.metrics;
      out.push_back(r);
      continue;
    }
    for (size_t k = 0; k < s.full_runs.size(); ++k) {
      TrialReport fr = r;
      fr.request.fidelity = k == 0 ? Fidelity::Full : Fidelity::Confirm;
      fr.metrics = s.full_runs[k];
      fr.value = objective_metric(s.full_runs[k], space_.study.objective);
      fr.healthy = healthy(s.full_runs[k], s.failure, s.status);
      out.push_back(fr);
    }
  }
  return out;
}

void Study::record_prediction(size_t i) {
  if (dry_) return;
  const MemoryPrediction p = prediction(i);
  nlohmann::json j = {{"memory_gib", p.known ? nlohmann::json(p.memory_gib) : nlohmann::json(nullptr)},
                      {"sigma_gib", p.known ? nlohmann::json(p.sigma_gib) : nlohmann::json(nullptr)},
                      {"observations", memory_->observations()},
                      {"headroom", space_.prune.memory_headroom},
                      {"capacity_gib", optional_to_json(capacity_)},
                      {"verified", p.known && p.verified},
                      {"regime", p.regime}};
  if (capacity_ && p.known) j["fits"] = partune::predicted_to_fit(p, *capacity_, space_.prune.memory_headroom);
  store_.set_facts(space_.study.name, candidates_[i].id, {{"prediction", j}});
}

void Study::record_not_run(size_t i, const NotRun& why) {
  if (dry_) return;
  nlohmann::json j = {{"kind", why.kind}, {"text", why.text}};
  if (why.predicted) j["predicted"] = *why.predicted;
  if (why.upper) j["upper"] = *why.upper;
  if (why.best) j["best"] = *why.best;
  store_.set_facts(space_.study.name, candidates_[i].id, {{"not_run", j}});
}

void Study::mark_running(size_t i, const std::string& log_dir) {
  TrialRequest r;
  r.index = i;
  r.steps = space_.trial.steps;
  mark_running(i, log_dir, r);
}

void Study::mark_running(size_t i, const std::string& log_dir, const TrialRequest& request) {
  State& s = state_[i];
  if (s.status != TrialStatus::Running) s.before_launch = s.status;
  s.status = TrialStatus::Running;
  if (dry_) return;  // the replayed launch's attempt is in the store's count already
  // Journal first: a kill before the row is marked leaves a launch without a
  // result, which the next run starts again.
  store_.add_event(space_.study.name, candidates_[i].id, kLaunchEvent,
                   std::string(to_string(request.fidelity)) + " run of " + std::to_string(request.steps) + " steps",
                   launch_data(request));
  store_.mark_running(space_.study.name, candidates_[i].id, 0, log_dir);
  record_prediction(i);
  ++s.attempt;
}

void Study::interrupted(size_t i) {
  State& s = state_[i];
  if (s.status == TrialStatus::Running) s.status = s.before_launch;
}

int64_t Study::sync_store() {
  std::map<std::string, TrialRecord> rows;
  for (auto& r : store_.trials(space_.study.name)) rows.emplace(r.id, std::move(r));
  int64_t mended = 0;
  for (size_t i = 0; i < state_.size(); ++i) {
    State& s = state_[i];
    if (!s.replayed) continue;
    const auto it = rows.find(candidates_[i].id);
    if (it == rows.end()) continue;
    const TrialStatus stored = it->second.status;
    const bool open = stored == TrialStatus::Pending || stored == TrialStatus::Running;
    if (stored == TrialStatus::Pruned && s.status == TrialStatus::Pending) {
      if (s.unpruned_dry > 0 && s.unpruned_dry > unprune_events(candidates_[i].id)) {
        // The replay un-pruned it, and the kill came before the un-prune
        // was written.
        if (store_.mark_unpruned(space_.study.name, candidates_[i].id, s.unprune_message, s.unprune_data)) ++mended;
        record_prediction(i);
      } else {
        // Pruned after the last journalled event (by the loop before a
        // launch that never came, or by a later run while it waited to be
        // run again).
        s.status = TrialStatus::Pruned;
        s.reason = it->second.reason;
        s.pruned_by = it->second.pruned_by;
        s.pruned_at_gib =
            it->second.facts.contains("prediction") ? it->second.facts["prediction"].value("memory_gib", 0.0) : 0.0;
      }
    } else if (open && (s.status == TrialStatus::Done || s.status == TrialStatus::Failed)) {
      store_.set_facts(space_.study.name, candidates_[i].id, {{"search", search_facts(i)}});
      store_.finish_trial(space_.study.name, candidates_[i].id, s.status, s.failure, s.reason, s.metrics, s.wall_s);
      ++mended;
    } else if (stored == TrialStatus::Pending && s.status == TrialStatus::Pruned) {
      if (store_.mark_pruned(space_.study.name, candidates_[i].id, s.reason, s.pruned_by)) ++mended;
    }
  }
  return mended;
}

nlohmann::json Study::search_facts(size_t i) const {
  const State& s = state_[i];
  nlohmann::json runs = nlohmann::json::array();
  std::vector<double> values;
  for (const auto& m : s.full_runs) {
    runs.push_back(metrics_to_json(m));
    if (auto v = objective_metric(m, space_.study.objective)) values.push_back(*v);
  }
  nlohmann::json search = {{"fidelity", std::string(to_string(s.last_request.fidelity))},
                           {"steps", s.last_request.steps},
                           {"why", s.last_request.why},
                           {"short", optional_to_json(s.short_value)},
                           {"runs", runs}};
  if (!s.stopped_early.empty()) search["stopped_early"] = s.stopped_early;
  if (values.size() >= 2) {
    double lo = values[0], hi = values[0], sum = 0;
    for (double v : values) lo = std::min(lo, v), hi = std::max(hi, v), sum += v;
    const double mean = sum / static_cast<double>(values.size());
    search["mean"] = mean;
    search["spread"] = mean > 0 ? (hi - lo) / mean : 0.0;
  }
  return search;
}

Study::Finished Study::finish(size_t i, const TrialRequest& request, const TrialOutcome& o) {
  State& s = state_[i];
  const std::string& study = space_.study.name;
  Finished f;
  TrialReport& r = f.report;
  r.request = request;
  r.status = o.status;
  r.failure = o.failure;
  r.reason = o.reason;
  r.metrics = o.metrics;
  r.value = o.status == TrialStatus::Done ? objective_metric(o.metrics, space_.study.objective) : std::nullopt;
  r.healthy = healthy(o.metrics, o.failure, o.status);
  r.counted = o.counted;
  r.stopped_early = o.stopped_early;
  r.wall_s = o.wall_s;
  r.startup_s = o.startup_s;

  // What the store keeps as the trial's result: a failure as it is; a short
  // run until a full one exists; the mean of the full runs after that.
  TrialMetrics stored = o.metrics;
  if (o.status == TrialStatus::Done) {
    if (request.fidelity == Fidelity::Short) {
      s.short_value = r.value;
      if (!s.full_runs.empty()) stored = combine_runs(s.full_runs, RunStatistic::Mean);
    } else {
      s.full_runs.push_back(o.metrics);
      stored = combine_runs(s.full_runs, RunStatistic::Mean);
    }
  }
  // A rerun that fails stands as the trial's result (a config that fails
  // once is not one to train on); the earlier runs stay in the facts.
  s.status = o.status;
  s.failure = o.failure;
  s.reason = o.reason;
  s.wall_s = o.wall_s;
  s.metrics = stored;
  s.last_request = request;
  s.stopped_early = o.stopped_early ? o.reason : "";
  if (!dry_) {
    // Journal first, then the facts, then the row (its status last): a kill
    // anywhere leaves the row open, which sync_store mends from the journal.
    store_.add_event(study, candidates_[i].id, kResultEvent,
                     std::string(to_string(request.fidelity)) + " run " + std::string(to_string(o.status)),
                     result_data(request, o));
    store_.set_facts(study, candidates_[i].id, {{"search", search_facts(i)}});
    store_.finish_trial(study, candidates_[i].id, o.status, o.failure, o.reason, stored, o.wall_s);
    if (o.startup_s || o.host_peak_rss_gib)
      store_.set_trial_costs(study, candidates_[i].id, o.startup_s, o.host_peak_rss_gib);
  }

  const bool observed = o.status == TrialStatus::Done && o.metrics.memory_gib;
  if (observed) observe_memory(i, o.metrics);
  if (auto why = over_memory_limit(o.failure, o.metrics, limit_)) {
    std::vector<const Candidate*> pending;
    for (size_t k = 0; k < state_.size(); ++k)
      if (state_[k].status == TrialStatus::Pending) pending.push_back(&candidates_[k]);
    for (auto& d : dominated_by(candidates_[i], *why, pending)) {
      for (size_t k = 0; k < state_.size(); ++k)
        if (candidates_[k].id == d.candidate_id && prune(k, d.reason, candidates_[i].id)) f.pruned.push_back(d);
    }
  }
  if (observed) f.unpruned = unprune_fitting(i);
  return f;
}

bool Study::pruned_by_prediction(size_t i) const {
  return state_[i].status == TrialStatus::Pruned && prediction_reason(state_[i].reason, state_[i].pruned_by);
}

std::vector<Study::Unpruned> Study::unprune_fitting(size_t i) {
  std::vector<size_t> back;
  for (size_t k = 0; k < state_.size(); ++k)
    if (pruned_by_prediction(k) && predicted_to_fit(k)) back.push_back(k);
  if (back.empty()) return {};
  // What a measured trial showed cannot fit stays pruned, whatever the model
  // says: a trial over the memory limit that needs no more memory than it.
  std::vector<const Candidate*> cands;
  for (size_t k : back) cands.push_back(&candidates_[k]);
  std::set<std::string> held;
  for (size_t j = 0; j < state_.size(); ++j) {
    const State& t = state_[j];
    if (t.status != TrialStatus::Done && t.status != TrialStatus::Failed) continue;
    if (auto why = over_memory_limit(t.failure, t.metrics, limit_))
      for (const auto& d : dominated_by(candidates_[j], *why, cands)) held.insert(d.candidate_id);
  }
  std::vector<Unpruned> out;
  for (size_t k : back) {
    if (held.count(candidates_[k].id)) continue;
    State& s = state_[k];
    const MemoryPrediction p = prediction(k);
    Unpruned u{k, s.pruned_at_gib, p.memory_gib};
    const std::string message = unprune_message(u, p.known, candidates_[i].id);
    const nlohmann::json data = {{"caused_by", candidates_[i].id},
                                 {"was_gib", u.was_gib},
                                 {"now_gib", p.known ? nlohmann::json(u.now_gib) : nlohmann::json(nullptr)},
                                 {"reason", s.reason}};
    if (dry_) {
      ++s.unpruned_dry;
      s.unprune_message = message;
      s.unprune_data = data;
    } else if (!store_.mark_unpruned(space_.study.name, candidates_[k].id, message, data)) {
      continue;
    }
    s.status = TrialStatus::Pending;
    s.reason.clear();
    s.pruned_by.clear();
    record_prediction(k);
    out.push_back(u);
  }
  return out;
}

int64_t Study::unprune_events(const std::string& id) {
  int64_t n = 0;
  for (const auto& e : store_.events(space_.study.name, id)) n += e.kind == kUnpruneEvent;
  return n;
}

bool Study::prune(size_t i, const std::string& reason, const std::string& caused_by) {
  if (state_[i].status != TrialStatus::Pending) return false;
  if (!dry_ && !store_.mark_pruned(space_.study.name, candidates_[i].id, reason, caused_by)) return false;
  record_prediction(i);
  state_[i].pruned_at_gib = prediction(i).memory_gib;
  state_[i].status = TrialStatus::Pruned;
  state_[i].reason = reason;
  state_[i].pruned_by = caused_by;
  return true;
}

void Study::event(const std::string& kind, const std::string& message, const std::optional<size_t>& trial) {
  if (dry_) return;
  store_.add_event(space_.study.name, trial ? std::optional<std::string>(candidates_[*trial].id) : std::nullopt, kind,
                   message);
}

StudyCounts Study::counts() const {
  StudyCounts c;
  for (size_t i = 0; i < state_.size(); ++i) {
    switch (state_[i].status) {
      case TrialStatus::Pending:
        ++c.pending;
        if (predicted_to_fit(i)) ++c.predicted_to_fit;
        break;
      case TrialStatus::Running:
        ++c.running;
        break;
      case TrialStatus::Done:
        ++c.done;
        break;
      case TrialStatus::Failed:
        ++c.failed;
        break;
      case TrialStatus::Pruned:
        ++c.pruned;
        break;
    }
  }
  return c;
}

std::optional<size_t> Study::best() const {
  std::optional<size_t> best;
  for (size_t i = 0; i < state_.size(); ++i) {
    if (!healthy(state_[i].metrics, state_[i].failure, state_[i].status)) continue;
    auto v = value(i);
    if (!v) continue;
    if (!best || *v > *value(*best) || (*v == *value(*best) && candidates_[i].id < candidates_[*best].id)) best = i;
  }
  return best;
}

}  // namespace partune
