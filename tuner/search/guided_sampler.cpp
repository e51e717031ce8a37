#include "tuner/search/guided_sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "common/hash.h"
#include "common/job_keys.h"
#include "tuner/prune/pruner.h"

namespace partune {

namespace {

constexpr double kNone = -std::numeric_limits<double>::infinity();
using keys::kLbs;
constexpr const char* kSeq = keys::kSeqLen;

double axis_number(const Candidate& c, const char* key) {
  auto it = c.axes.find(key);
  if (it != c.axes.end()) {
    if (auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
    if (auto* d = std::get_if<double>(&it->second)) return *d;
  }
  if (auto v = c.config.get(key))
    if (auto* i = std::get_if<int64_t>(&*v)) return static_cast<double>(*i);
  return 0;
}

std::string pct(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * v);
  return buf;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) >= 1e4 ? "%.0f" : "%.4g", v);
  return buf;
}

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double normal_pdf(double z) { return std::exp(-0.5 * z * z) / std::sqrt(2.0 * M_PI); }

// Expected improvement of a normal N(mean, sd) over `best`.
double expected_improvement(double mean, double sd, double best) {
  if (sd <= 0) return std::max(0.0, mean - best);
  const double z = (mean - best) / sd;
  return sd * (z * normal_cdf(z) + normal_pdf(z));
}

constexpr const char* kNothingFits = "no candidate of the layout is predicted to fit in memory";

bool is_layout_failure(FailureClass f) {
  return f == FailureClass::Hang || f == FailureClass::Crash || f == FailureClass::Nccl || f == FailureClass::Timeout ||
         f == FailureClass::Error;
}

}  // namespace

void GuidedSampler::init(const StudyView& view) {
  initialised_ = true;
  const size_t n = view.size();
  std::vector<Candidate> cands;
  cands.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    cands.push_back(view.candidate(i));
    ids_.push_back(cands.back().id);
  }
  model_ = std::make_unique<ThroughputModel>(cands);
  state_.assign(n, {});
  layout_of_.assign(n, 0);
  std::map<std::string, size_t> by_key;
  for (size_t i = 0; i < n; ++i) {
    const std::string key = layout_key(cands[i]);
    auto [it, inserted] = by_key.emplace(key, layouts_.size());
    if (inserted) layouts_.push_back({key, {}, false, false, 0, ""});
    layouts_[it->second].members.push_back(i);
    layout_of_[i] = it->second;
  }
  // Probe order: seeded, by the layout's content (not its place in the file).
  std::vector<std::pair<uint64_t, size_t>> keyed;
  for (size_t l = 0; l < layouts_.size(); ++l)
    keyed.emplace_back(fnv1a64(layouts_[l].key + "#" + std::to_string(opt_.seed)), l);
  std::sort(keyed.begin(), keyed.end());
  std::vector<Layout> ordered;
  for (const auto& [h, l] : keyed) ordered.push_back(layouts_[l]);
  layouts_ = std::move(ordered);
  for (size_t l = 0; l < layouts_.size(); ++l)
    for (size_t i : layouts_[l].members) layout_of_[i] = l;
}

uint64_t GuidedSampler::tie(size_t i) const { return fnv1a64(ids_[i] + "#" + std::to_string(opt_.seed)); }

double GuidedSampler::known_value(size_t i) const {
  const State& s = state_[i];
  if (!s.healthy) return kNone;
  if (!s.full_values.empty())
    return std::accumulate(s.full_values.begin(), s.full_values.end(), 0.0) / static_cast<double>(s.full_values.size());
  return s.short_value.value_or(kNone);
}

double GuidedSampler::best_known() const {
  double best = kNone;
  for (size_t i = 0; i < state_.size(); ++i) best = std::max(best, known_value(i));
  return best;
}

TrialRequest GuidedSampler::request(const StudyView& view, size_t i, Fidelity f, std::string why) {
  const TrialSpec& t = view.trial_spec();
  TrialRequest r;
  r.index = i;
  r.fidelity = f;
  r.why = std::move(why);
  const int short_steps = t.warmup_steps + opt_.short_counted_steps;
  // A short trial that is not much shorter than a full one is not worth a
  // second start-up later: run it full at once.
  if (f == Fidelity::Short && 2 * short_steps > t.steps) r.fidelity = Fidelity::Full;
  r.steps = r.fidelity == Fidelity::Short ? short_steps : t.steps;
  outstanding_.insert(i);
  return r;
}

std::optional<TrialRequest> GuidedSampler::next_probe(const StudyView& view) {
  for (auto& layout : layouts_) {
    if (layout.probed || !layout.set_aside.empty()) continue;
    // Smallest batch, then smallest sequence, then the lightest activation
    // checkpointing, among the members predicted to fit.
    std::optional<size_t> pick;
    auto rank = [&](size_t i) {
      const Candidate& c = view.candidate(i);
      return std::make_tuple(axis_number(c, kLbs), axis_number(c, kSeq), -ac_memory_rank(c.config), tie(i));
    };
    for (size_t i : layout.members) {
      if (view.status(i) != TrialStatus::Pending || outstanding_.count(i) || !view.predicted_to_fit(i)) continue;
      if (state_[i].short_value || !state_[i].full_values.empty()) continue;
      if (!pick || rank(i) < rank(*pick)) pick = i;
    }
    layout.probed = true;
    if (!pick) {
      layout.set_aside = kNothingFits;
      notes_.push_back("layout " + layout.key + " set aside: " + layout.set_aside);
      continue;
    }
    return request(view, *pick, Fidelity::Short,
                   layout.key.empty() ? std::string("probe of the only layout") : "probe of layout " + layout.key);
  }
  return std::nullopt;
}

std::optional<TrialRequest> GuidedSampler::next_frontier_probe(const StudyView& view) {
  // After the first probes: the first results place every layout, so each
  // gets one more probe, on its memory frontier (where winners sit), at the
  // point the model ranks highest: a layout's small-batch probe says little
  // of how it does at a long sequence or a large batch.
  for (const auto& l : layouts_)
    if (!l.probed && l.set_aside.empty()) return std::nullopt;
  if (best_known() == kNone) return std::nullopt;
  refit(view);
  for (auto& layout : layouts_) {
    if (layout.frontier_probed || !layout.set_aside.empty()) continue;
    layout.frontier_probed = true;
    std::optional<size_t> pick;
    double pick_mean = 0;
    for (size_t i : layout.members) {
      if (!frontier_[i] || view.status(i) != TrialStatus::Pending || outstanding_.count(i)) continue;
      if (state_[i].short_value || !state_[i].full_values.empty()) continue;
      const double mean = model_->predict(i).mean + std::log(std::max(1e-9, view.fit_probability(i)));
      if (!pick || mean > pick_mean || (mean == pick_mean && tie(i) < tie(*pick))) {
        pick = i;
        pick_mean = mean;
      }
    }
    if (!pick) continue;
    return request(
        view, *pick, Fidelity::Short,
        "frontier probe of layout " + layout.key + ": its largest batch predicted to fit at the model's best");
  }
  return std::nullopt;
}

std::optional<TrialRequest> GuidedSampler::next_promotion(const StudyView& view) {
  while (!promotions_.empty()) {
    const size_t i = promotions_.front();
    promotions_.erase(promotions_.begin());
    // Pending again when a killed tune interrupted its full run.
    const TrialStatus st = view.status(i);
    if (outstanding_.count(i) || !state_[i].healthy || (st != TrialStatus::Done && st != TrialStatus::Pending))
      continue;
    if (!state_[i].full_values.empty()) continue;  // a resumed study measured it in full already
    return request(view, i, Fidelity::Full,
                   "promoted: short result within " + pct(opt_.promote_margin) + " of the best");
  }
  return std::nullopt;
}

double GuidedSampler::model_error() const {
  const double measured = model_->measured_error();
  return measured >= 0 ? std::max(measured, opt_.min_model_error) : opt_.model_misfit;
}

int GuidedSampler::unconfirmed_contenders(const StudyView& view) const {
  int n = 0;
  for (size_t i : contenders(view)) n += !state_[i].confirmed && state_[i].full_values.size() < 2;
  return n;
}

std::vector<size_t> GuidedSampler::contenders(const StudyView& view) const {
  std::vector<size_t> full;
  for (size_t i = 0; i < state_.size(); ++i)
    if (state_[i].healthy && !state_[i].full_values.empty() && view.status(i) == TrialStatus::Done) full.push_back(i);
  std::sort(full.begin(), full.end(), [&](size_t a, size_t b) {
    const double va = known_value(a), vb = known_value(b);
    return va != vb ? va > vb : tie(a) < tie(b);
  });
  if (full.size() > static_cast<size_t>(opt_.confirm_top_k)) full.resize(static_cast<size_t>(opt_.confirm_top_k));
  // Only contenders: a config clearly below the best would not change the
  // ranking however its re-run came out.
  const double best = full.empty() ? 0 : known_value(full.front());
  std::erase_if(full, [&](size_t i) { return known_value(i) < (1 - 2 * opt_.promote_margin) * best; });
  return full;
}

void GuidedSampler::refit(const StudyView& view) {
  if (!model_stale_) return;
  std::vector<std::pair<size_t, double>> obs;
  for (size_t i = 0; i < state_.size(); ++i)
    if (double v = known_value(i); v > 0) obs.emplace_back(i, std::log(v));
  model_->fit(obs);
  model_stale_ = false;
  // The memory frontier: per layout x everything but the batch, the largest
  // batch predicted to fit (what is left of it untried is a probe worth
  // more than the model alone says).
  frontier_.assign(state_.size(), false);
  std::map<std::string, size_t> top;  // layout + other memory axes -> candidate
  for (size_t i = 0; i < state_.size(); ++i) {
    if (!view.predicted_to_fit(i) || !state_[i].healthy) continue;
    const Candidate& c = view.candidate(i);
    std::string key;
    for (const auto& [k, v] : c.axes)
      if (k != kLbs) key += k + "=" + value_to_string(v) + ";";
    auto [it, inserted] = top.emplace(key, i);
    if (!inserted && axis_number(c, kLbs) > axis_number(view.candidate(it->second), kLbs)) it->second = i;
  }
  for (const auto& [key, i] : top) frontier_[i] = true;
}

std::optional<TrialRequest> GuidedSampler::next_explore(const StudyView& view) {
  if (exploring_done_) return std::nullopt;
  const std::optional<double> left = view.remaining_s();
  const double full = full_cost_n_ ? full_cost_sum_ / full_cost_n_ : 0;
  const double shorter = short_cost_n_ ? short_cost_sum_ / short_cost_n_ : full;
  if (left) {
    // With a time budget the search goes on while it has time: it stops
    // only to keep what confirming the contenders not yet confirmed costs,
    // and starts again once they are (leftover budget goes back to the
    // search).
    const double keep = std::max(1, unconfirmed_contenders(view)) * full + shorter;
    if (*left < keep) {
      ended_by_budget_ = true;
      if (!budget_noted_)
        notes_.push_back("exploration pauses: the " + num(*left) + " s left of the time budget go to confirmation");
      budget_noted_ = true;
      return std::nullopt;
    }
    budget_noted_ = false;
  } else if (since_gain_ >= opt_.patience) {
    exploring_done_ = true;
    notes_.push_back("exploration ends: " + std::to_string(since_gain_) + " trials without a 0.5% gain");
    return std::nullopt;
  }
  refit(view);
  const double best = best_known();
  const double best_log = best > 0 ? std::log(best) : kNone;
  // Nothing measured yet but trials running: their results come first.
  if (best_log == kNone && !outstanding_.empty()) return std::nullopt;
  const double error = model_error();
  std::optional<size_t> pick;
  double pick_score = 0;
  int frontier_due = 0;  // untried frontier points not excluded with confidence
  for (size_t i = 0; i < state_.size(); ++i) {
    if (view.status(i) != TrialStatus::Pending || outstanding_.count(i) || !state_[i].healthy) continue;
    if (state_[i].short_value) continue;  // measured; a promotion is its next run
    if (!layouts_[layout_of_[i]].set_aside.empty() || !view.predicted_to_fit(i)) continue;
    const auto p = model_->predict(i);
    const double sd = std::hypot(p.sd, error);
    // The memory frontier is where winners sit and where the model knows
    // least (the fall past memory pressure is sharp): its points count with
    // a wider spread.
    const double spread = frontier_[i] ? opt_.frontier_spread * sd : sd;
    const double ei = best_log == kNone ? std::exp(p.mean + sd) : expected_improvement(p.mean, spread, best_log);
    const double score = ei * view.fit_probability(i);
    frontier_due += frontier_[i] && best_log != kNone && p.mean + opt_.exclude_sigmas * spread >= best_log;
    if (!pick || score > pick_score || (score == pick_score && tie(i) < tie(*pick))) {
      pick = i;
      pick_score = score;
    }
  }
  if (!pick) {
    if (!outstanding_.empty()) return std::nullopt;  // the running ones may open new candidates
    exploring_done_ = true;
    notes_.push_back("exploration ends: no candidate left to try");
    return std::nullopt;
  }
  // Without a budget: stop when no candidate is expected to gain more than
  // min_improvement, judged with the model's measured error, and every
  // point of the memory frontier is tried or excluded with confidence (its
  // upper bound below the best).
  if (!left && best_log != kNone && pick_score < opt_.min_improvement && frontier_due == 0) {
    exploring_done_ = true;
    notes_.push_back("exploration ends: the best expected improvement is " + pct(pick_score) + " (< " +
                     pct(opt_.min_improvement) + ", model error " + pct(error) + " measured on " +
                     std::to_string(model_->residual().loo_residuals().size()) + " results)");
    return std::nullopt;
  }
  const auto p = model_->predict(*pick);
  return request(view, *pick, Fidelity::Short,
                 std::string(frontier_[*pick] ? "memory frontier, " : "") + "expected improvement " + pct(pick_score) +
                     " (model " + num(std::exp(p.mean)) + " +- " + pct(std::hypot(p.sd, error)) +
                     ", fits with p=" + num(view.fit_probability(*pick)) + ")");
}

std::optional<TrialRequest> GuidedSampler::next_confirm(const StudyView& view) {
  const std::vector<size_t> full = contenders(view);
  for (size_t i : full) {
    if (state_[i].confirmed || state_[i].full_values.size() >= 2 || outstanding_.count(i)) continue;
    state_[i].confirmed = true;  // asked once, whatever comes of it
    return request(view, i, Fidelity::Confirm,
                   "confirmation of a top-" + std::to_string(opt_.confirm_top_k) + " result");
  }
  // The first two too close to tell apart by their runs' spread: one more
  // run of the one with fewer runs, up to max_confirm_runs each.
  if (full.size() < 2 || outstanding_.count(full[0]) || outstanding_.count(full[1])) return std::nullopt;
  const double sd = run_to_run_sd();
  const double n0 = static_cast<double>(state_[full[0]].full_values.size());
  const double n1 = static_cast<double>(state_[full[1]].full_values.size());
  const double gap = (known_value(full[0]) - known_value(full[1])) / known_value(full[0]);
  if (gap >= 2 * sd * std::sqrt(1 / n0 + 1 / n1)) return std::nullopt;
  const size_t i = n1 < n0 ? full[1] : full[0];
  if (state_[i].full_values.size() >= static_cast<size_t>(opt_.max_confirm_runs)) return std::nullopt;
  return request(view, i, Fidelity::Confirm,
                 "tie-break: the first two are " + pct(gap) + " apart, within twice their runs' standard error");
}

double GuidedSampler::run_to_run_sd() const {
  // Pooled relative spread of the configs run more than once; 1% before any.
  double ss = 0, dof = 0;
  for (const State& s : state_) {
    if (!s.healthy || s.full_values.size() < 2) continue;
    const double n = static_cast<double>(s.full_values.size());
    const double m = std::accumulate(s.full_values.begin(), s.full_values.end(), 0.0) / n;
    for (double v : s.full_values) ss += (v - m) * (v - m) / (m * m);
    dof += n - 1;
  }
  return dof > 0 ? std::max(0.002, std::sqrt(ss / dof)) : 0.01;
}

Ask GuidedSampler::ask(const StudyView& view) {
  if (!initialised_) init(view);
  if (auto r = next_probe(view)) return Ask::trial(*r);
  if (auto r = next_promotion(view)) return Ask::trial(*r);
  if (auto r = next_frontier_probe(view)) return Ask::trial(*r);
  if (auto r = next_explore(view)) return Ask::trial(*r);
  // Confirmation waits for the promotions and explorations in flight.
  if (!outstanding_.empty()) return Ask::wait("waiting for running trials before confirmation");
  if (auto r = next_confirm(view)) return Ask::trial(*r);
  if (!outstanding_.empty()) return Ask::wait("waiting for confirmation runs");
  // Confirmed, and time left: back to the search (next_explore keeps only
  // what confirming a new contender would cost).
  if (view.remaining_s() && !exploring_done_) {
    if (auto r = next_explore(view)) return Ask::trial(*r);
    if (!outstanding_.empty()) return Ask::wait("waiting for running trials");
  }
  if (ended_by_budget_)
    return Ask::finished(
        "the time budget is used up and the best so far confirmed; run the same command again to go on");
  return Ask::finished("explored and confirmed");
}

void GuidedSampler::tell(const StudyView& view, const TrialReport& report) {
  if (!initialised_) init(view);
  const size_t i = report.request.index;
  outstanding_.erase(i);
  State& s = state_[i];
  Layout& layout = layouts_[layout_of_[i]];
  if (report.status == TrialStatus::Pruned) {
    // A probe that could not run: the layout gets another probe.
    if (report.request.why.rfind("probe", 0) == 0) layout.probed = false;
    s.healthy = false;
    return;
  }
  if (report.status != TrialStatus::Done && report.status != TrialStatus::Failed) return;
  // The result recalibrated the memory model: a layout set aside because
  // none of it was predicted to fit is probed once some of it is.
  for (auto& l : layouts_) {
    if (l.set_aside != kNothingFits) continue;
    for (size_t m : l.members)
      if (view.status(m) == TrialStatus::Pending && !outstanding_.count(m) && view.predicted_to_fit(m)) {
        l.set_aside.clear();
        l.probed = false;
        notes_.push_back("layout " + l.key + " back: " + ids_[m] + " is now predicted to fit");
        break;
      }
  }
  layout.probed = true;  // a result of any member (a resumed study's too) tells about the layout
  // A second member measured places the layout beyond its probe: a resumed
  // study does not probe its frontier again.
  if (!s.measured) {
    s.measured = true;
    if (++layout.measured >= 2) layout.frontier_probed = true;
  }
  (report.request.fidelity == Fidelity::Short ? short_cost_sum_ : full_cost_sum_) += report.wall_s;
  ++(report.request.fidelity == Fidelity::Short ? short_cost_n_ : full_cost_n_);
  if (report.status == TrialStatus::Failed) {
    s.healthy = false;
    if (is_layout_failure(report.failure) && layout.set_aside.empty()) {
      // At the layout's smallest batch and sequence, the failure is not about
      // memory: the layout itself does not run.
      const Candidate& c = view.candidate(i);
      bool smallest = true;
      for (size_t m : layout.members) {
        const Candidate& o = view.candidate(m);
        if (axis_number(o, kLbs) < axis_number(c, kLbs) ||
            (axis_number(o, kLbs) == axis_number(c, kLbs) && axis_number(o, kSeq) < axis_number(c, kSeq)))
          smallest = false;
      }
      if (smallest) {
        layout.set_aside = std::string(to_string(report.failure)) + " at its smallest batch and sequence (trial " +
                           c.id + (report.reason.empty() ? "" : ": " + report.reason) + ")";
        notes_.push_back("layout " + layout.key + " set aside: " + layout.set_aside);
      }
    }
    ++since_gain_;
    return;
  }
  if (!report.healthy || !report.value) {
    s.healthy = false;
    ++since_gain_;
    return;
  }
  // Step-to-step noise, pooled over trials: the yardstick of early stopping.
  if (report.counted.size() >= 3) {
    const double n = static_cast<double>(report.counted.size());
    const double m = std::accumulate(report.counted.begin(), report.counted.end(), 0.0) / n;
    double ss = 0;
    for (double v : report.counted) ss += (v - m) * (v - m);
    if (m > 0) {
      step_rel_sd_sum_ += std::sqrt(ss / (n - 1)) / m;
      ++step_rel_sd_n_;
    }
  }
  const double before = best_known();
  const double v = *report.value;
  if (report.request.fidelity == Fidelity::Short) {
    s.short_value = v;
  } else {
    s.full_values.push_back(v);
    if (report.request.fidelity == Fidelity::Confirm) s.confirmed = true;
  }
  s.stopped_early = s.stopped_early || report.stopped_early;
  model_stale_ = true;
  if (report.request.fidelity == Fidelity::Short && !report.stopped_early && !s.promoted &&
      (before == kNone || v >= (1 - opt_.promote_margin) * before)) {
    s.promoted = true;
    promotions_.push_back(i);
    notes_.push_back("promote " + ids_[i] + " to " + std::to_string(view.trial_spec().steps) + " steps: short result " +
                     num(v) + " vs best " + (before == kNone ? std::string("none") : num(before)));
  }
  const double after = best_known();
  if (gain_mark_ <= 0 || after > gain_mark_ * 1.005) {
    gain_mark_ = after;
    since_gain_ = 0;
  } else if (report.request.fidelity != Fidelity::Confirm) {
    ++since_gain_;
  }
}

void GuidedSampler::restore(const StudyView& view, size_t i) {
  if (!initialised_) init(view);
  State& s = state_[i];
  // A run's result stands: only what was pruned without running comes back.
  if (s.measured) return;
  s.healthy = true;
  model_stale_ = true;  // the memory frontier moves
  Layout& layout = layouts_[layout_of_[i]];
  if (layout.set_aside == kNothingFits) {
    layout.set_aside.clear();
    layout.probed = false;
    notes_.push_back("layout " + layout.key + " back: " + ids_[i] + " is now predicted to fit");
  } else if (layout.probed && layout.frontier_probed && layout.set_aside.empty()) {
    layout.frontier_probed = false;  // its frontier may be the restored candidate now
  }
  exploring_done_ = false;
}

std::optional<std::string> GuidedSampler::should_stop(const TrialRequest& request,
                                                      const std::vector<double>& counted) const {
  if (request.fidelity == Fidelity::Confirm || counted.size() < 3) return std::nullopt;
  double incumbent = kNone;
  for (size_t i = 0; i < state_.size(); ++i)
    if (i != request.index) incumbent = std::max(incumbent, known_value(i));
  if (incumbent <= 0) return std::nullopt;
  const double n = static_cast<double>(counted.size());
  const double mean = std::accumulate(counted.begin(), counted.end(), 0.0) / n;
  double ss = 0;
  for (double v : counted) ss += (v - mean) * (v - mean);
  const double pooled = step_rel_sd_n_ ? step_rel_sd_sum_ / step_rel_sd_n_ : 0.05;
  const double sd = std::max(std::sqrt(ss / (n - 1)), pooled * mean);
  const double upper = mean + opt_.stop_sigmas * sd / std::sqrt(n);
  if (upper >= incumbent * 0.99) return std::nullopt;
  return "stopped early: " + std::to_string(counted.size()) + " counted steps average " + num(mean) + " (at most " +
         num(upper) + " at " + num(opt_.stop_sigmas) + " standard errors), clearly below the best " + num(incumbent);
}

std::optional<int64_t> GuidedSampler::remaining_trials() const {
  int64_t n = static_cast<int64_t>(promotions_.size());
  for (const auto& l : layouts_) n += (!l.probed + !l.frontier_probed) * l.set_aside.empty();
  // Exploration: about two trials per layout more (the simulated studies').
  if (!exploring_done_) n += 2 * static_cast<int64_t>(layouts_.size());
  return n + opt_.confirm_top_k;
}

std::optional<NotRun> GuidedSampler::why_not_run(const StudyView& view, size_t i) {
  if (!initialised_) init(view);
  NotRun r;
  const Layout& layout = layouts_[layout_of_[i]];
  if (!layout.set_aside.empty()) {
    r.kind = "layout-set-aside";
    r.text = "its layout " + layout.key + " was set aside: " + layout.set_aside;
    return r;
  }
  if (!view.predicted_to_fit(i)) {
    const MemoryPrediction p = view.prediction(i);
    r.kind = "memory";
    r.text = "the memory model predicts " + num(p.memory_gib) + " GiB +- " + num(p.sigma_gib) +
             " GiB (fits with p=" + num(view.fit_probability(i)) + "): not predicted to fit under the headroom";
    return r;
  }
  if (!state_[i].healthy) return std::nullopt;
  refit(view);
  const double best = best_known();
  const auto p = model_->predict(i);
  const double error = model_error();
  const double spread = (frontier_[i] ? opt_.frontier_spread : 1.0) * std::hypot(p.sd, error);
  r.kind = "model";
  r.predicted = std::exp(p.mean);
  r.upper = std::exp(p.mean + opt_.exclude_sigmas * spread);
  std::string text = "the throughput model predicts " + num(*r.predicted) + " (upper bound " + num(*r.upper) + " at " +
                     num(opt_.exclude_sigmas) + " sd; model error " + pct(error) + " measured on " +
                     std::to_string(model_->residual().loo_residuals().size()) + " results)";
  if (best > 0) {
    r.best = best;
    text += " against the best " + num(best);
    text += *r.upper < best ? ": excluded with confidence"
                            : ": expected improvement " +
                                  pct(expected_improvement(p.mean, spread, std::log(best)) * view.fit_probability(i)) +
                                  ", below what the search ran before it ended";
  }
  r.text = text;
  return r;
}

std::vector<std::string> GuidedSampler::take_notes() {
  std::vector<std::string> out;
  out.swap(notes_);
  return out;
}

}  // namespace partune
