#include "tuner/report/why.h"

#include <algorithm>
#include <deque>
#include <fstream>

#include "common/error.h"
#include "common/job_keys.h"
#include "tuner/estimate/memory_model.h"
#include "tuner/report/format.h"
#include "tuner/report/report.h"

namespace partune {

namespace {

std::string axes_text(const std::map<std::string, Value>& axes) {
  std::string out;
  for (const auto& [key, value] : axes)
    out += (out.empty() ? "" : " ") + keys::short_name(key) + "=" + fmt::value(value);
  return out;
}

// The axes on which `other` differs from `self`, as "lbs 2 -> 4".
std::string differences(const TrialRecord& self, const TrialRecord& other) {
  std::string out;
  for (const auto& [key, value] : self.axes) {
    auto it = other.axes.find(key);
    if (it == other.axes.end() || it->second == value) continue;
    out +=
        (out.empty() ? "" : ", ") + keys::short_name(key) + " " + fmt::value(it->second) + " -> " + fmt::value(value);
  }
  return out.empty() ? "none" : out;
}

std::string metric_text(const TrialRecord& r, const std::string& objective) {
  const auto v = objective_metric(r.metrics, objective);
  if (!v) return objective + " -";
  return objective == "mfu" ? "mfu " + fmt::fixed(*v, 2) + "%" : objective + " " + fmt::thousands(*v);
}

const TrialRecord* by_id(const WhyInput& in, const std::string& id) {
  for (const auto& t : in.trials)
    if (t.id == id) return &t;
  return nullptr;
}

std::string prediction_text(const TrialRecord& r) {
  if (!r.facts.contains("prediction")) return "";
  const auto& p = r.facts["prediction"];
  if (!p.value("memory_gib", nlohmann::json()).is_number()) return "the memory model could not speak for this config";
  std::string out = "predicted " + fmt::fixed(p["memory_gib"].get<double>(), 2) + " GiB";
  if (p.value("sigma_gib", nlohmann::json()).is_number())
    out += " +- " + fmt::fixed(p["sigma_gib"].get<double>(), 2) + " GiB (1 sigma)";
  if (p.value("capacity_gib", nlohmann::json()).is_number())
    out += " against " + fmt::fixed(100.0 * p.value("headroom", kDefaultMemoryHeadroom), 0) + "% of " +
           fmt::fixed(p["capacity_gib"].get<double>(), 2) + " GiB";
  if (p.contains("observations"))
    out += ", calibrated on " + std::to_string(p["observations"].get<int64_t>()) + " measured trial(s)";
  if (p.value("verified", true) == false && p.value("regime", std::string()) != "")
    out += "; unverified: no trial had run at " + p["regime"].get<std::string>() + " (judged on the point estimate)";
  return out;
}

bool pruned_by_prediction(const TrialRecord& r) {
  return r.status == TrialStatus::Pruned && r.pruned_by.empty() && r.attempt == 0 &&
         is_prediction_prune_reason(r.reason);
}

}  // namespace

nlohmann::json why_json(const WhyInput& in, const WhyTarget& target) {
  nlohmann::json j;
  j["kind"] = why_kind(in, target);
  j["text"] = explain_why(in, target);
  if (target.rejected) {
    j["id"] = target.rejected->id;
    j["rule"] = target.rejected->rule;
    return j;
  }
  const TrialRecord& r = *target.trial;
  j["id"] = r.id;
  j["status"] = std::string(to_string(r.status));
  nlohmann::json axes = nlohmann::json::object();
  for (const auto& [key, value] : r.axes) axes[key] = fmt::value(value);
  j["axes"] = axes;
  for (const char* key : {"not_run", "prediction"})
    if (r.facts.contains(key)) j[key] = r.facts[key];
  if (!r.reason.empty()) j["reason"] = r.reason;
  return j;
}

std::string tail_lines(const std::string& path, size_t lines) {
  std::ifstream f(path);
  if (!f) return "";
  std::deque<std::string> last;
  for (std::string line; std::getline(f, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += l + "\n";
  return out;
}

WhyTarget find_why_target(const WhyInput& in, const std::string& study, const std::string& prefix) {
  if (prefix.empty()) throw InputError("tune why: give a candidate id (a unique prefix is enough)");
  WhyTarget t;
  size_t matches = 0;
  for (const auto& r : in.trials)
    if (r.id.rfind(prefix, 0) == 0) t.trial = &r, ++matches;
  for (const auto& p : in.rejected)
    if (p.id.rfind(prefix, 0) == 0) t.rejected = &p, ++matches;
  if (matches == 0)
    throw InputError("study '" + study + "': no candidate with id '" + prefix + "'" +
                     (in.have_space
                          ? " (neither a trial nor a rejected point of the space)"
                          : " among its trials (give --space to look among the points the planner rejected)"));
  if (matches > 1)
    throw InputError("study '" + study + "': id prefix '" + prefix + "' matches " + std::to_string(matches) +
                     " candidates; give more digits");
  return t;
}

std::string why_kind(const WhyInput& in, const WhyTarget& target) {
  if (target.rejected) return "rejected";
  const TrialRecord& r = *target.trial;
  switch (r.status) {
    case TrialStatus::Pending:
      return "pending";
    case TrialStatus::Running:
      return "running";
    case TrialStatus::Failed:
      return "failed";
    case TrialStatus::Pruned:
      if (!r.pruned_by.empty()) return "pruned-by-trial";
      return pruned_by_prediction(r) ? "pruned-by-prediction" : "pruned";
    case TrialStatus::Done:
      break;
  }
  if (!is_healthy(r, in.health)) return "unhealthy";
  return objective_metric(r.metrics, in.objective) ? "ranked" : "unhealthy";
}

namespace {

std::string explain_kind(const WhyInput& in, const WhyTarget& target) {
  const std::string kind = why_kind(in, target);
  if (target.rejected) {
    const RejectedPoint& p = *target.rejected;
    return p.id + ": rejected: breaks the planner rule '" + p.rule + "'\n" + "  " + p.message + "\n" +
           "  axes: " + axes_text(p.axes) + "\n  it was never a candidate: torchtitan would refuse this config\n";
  }
  const TrialRecord& r = *target.trial;
  std::string out;
  const std::string axes = "  axes: " + axes_text(r.axes) + "\n";

  if (kind == "pending") {
    // The search's reason, kept when the study ended (drive_study).
    const bool said = r.facts.contains("not_run") && r.facts["not_run"].value("text", nlohmann::json()).is_string();
    out = r.id + ": pending: " + (said ? "not run: " + r.facts["not_run"]["text"].get<std::string>() : "not run yet");
    out += r.attempt > 0 ? " (put back to pending: " + r.reason + ")\n" : "\n";
    out += axes;
    if (auto p = prediction_text(r); !p.empty()) out += "  memory model: " + p + "\n";
    return out;
  }
  if (kind == "running")
    return r.id + ": running: attempt " + std::to_string(r.attempt) + " since " + r.started_at + "\n" + axes;
  if (kind == "pruned-by-trial") {
    out = r.id + ": pruned by trial " + r.pruned_by + ": " + r.reason + "\n" + axes;
    if (const TrialRecord* c = by_id(in, r.pruned_by)) {
      out += "  that trial: " + std::string(to_string(c->status));
      if (c->failure != FailureClass::None) out += " (" + std::string(to_string(c->failure)) + ")";
      out += ", memory " + fmt::memory(c->metrics.memory_gib, c->metrics.memory_pct) + ", " +
             std::to_string(c->metrics.alloc_retries) + " allocation retries, " +
             std::to_string(c->metrics.oom_errors) + " OOM errors\n";
      out += "  that trial's axes: " + axes_text(c->axes) + "\n";
      out += "  this candidate differs on: " + differences(r, *c) +
             " (needs at least as much memory on every memory axis, more on one)\n";
    }
    return out;
  }
  if (kind == "pruned-by-prediction") {
    out = r.id + ": pruned by the memory model before launch: " + r.reason + "\n" + axes;
    if (auto p = prediction_text(r); !p.empty()) out += "  memory model: " + p + "\n";
    return out;
  }
  if (kind == "pruned") {
    out = r.id + ": pruned: " + r.reason + "\n" + axes;
    if (r.attempt > 0)
      out += "  measured: " + metric_text(r, in.objective) + ", memory " +
             fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct) + "\n";
    return out;
  }
  if (kind == "failed") {
    out = r.id + ": failed (" + std::string(to_string(r.failure)) + "): " + r.reason + "\n" + axes;
    out += "  attempt " + std::to_string(r.attempt) + ", memory " +
           fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct) + ", " + std::to_string(r.metrics.alloc_retries) +
           " allocation retries\n";
    std::string lines;
    size_t shown = 0;
    for (const auto& e : in.events)
      if ((e.kind == "error" || e.kind == "alloc_retries") && shown++ < 10) lines += "    " + e.message + "\n";
    if (!lines.empty()) out += "  the lines that show it:\n" + lines;
    if (!in.log_tail.empty()) {
      out += "  end of " + r.log_dir + "/output.log:\n";
      std::string l;
      for (char ch : in.log_tail) {
        l += ch;
        if (ch == '\n') out += "    " + l, l.clear();
      }
    }
    return out;
  }
  if (kind == "unhealthy") {
    std::string because = unhealthy_because(r.status, r.failure, r.metrics, in.health);
    if (because.empty()) because = "it reported no " + in.objective;
    out = r.id + ": not ranked: done, but " + because + "\n" + axes;
    out += "  measured: " + metric_text(r, in.objective) + ", memory " +
           fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct) + ", " + std::to_string(r.metrics.alloc_retries) +
           " allocation retries (the study's rule: memory within " + fmt::fixed(100.0 * in.health.memory_headroom, 0) +
           "%" + (in.health.alloc_retries_over_limit ? ", no allocation retries" : "") + ")\n";
    return out;
  }
  // Ranked.
  const std::vector<TrialRecord> ranked = rank_best(in.trials, in.objective, 0, in.health);
  size_t pos = 0;
  while (pos < ranked.size() && ranked[pos].id != r.id) ++pos;
  if (pos == ranked.size()) {  // healthy itself, but unhealthy in production ([confirm])
    return r.id + ": not ranked: its production run ([confirm]) was not healthy\n" + axes;
  }
  const auto value = [&](const TrialRecord& t) {
    auto p = production_value(t, in.objective);
    return p ? *p : *objective_metric(t.metrics, in.objective);
  };
  out = r.id + ": ranked " + std::to_string(pos + 1) + " of " + std::to_string(ranked.size()) + " healthy trials by " +
        in.objective + "\n" + axes;
  out += "  measured: " + metric_text(r, in.objective) + ", memory " +
         fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct) + "\n";
  if (r.facts.contains("search") && r.facts["search"].contains("mean"))
    out += "  over " + std::to_string(r.facts["search"]["runs"].size()) + " runs: mean " +
           fmt::fixed(r.facts["search"]["mean"].get<double>(), 2) + ", spread " +
           fmt::fixed(100.0 * r.facts["search"]["spread"].get<double>(), 1) + "%\n";
  if (pos == 0) {
    if (ranked.size() > 1)
      out += "  the best: ahead of #2 " + ranked[1].id + " by " +
             fmt::fixed(100.0 * (value(r) / value(ranked[1]) - 1.0), 1) + "%\n";
    else
      out += "  the best: the only healthy trial\n";
    return out;
  }
  out += "  beaten by:\n";
  for (size_t k = 0; k < pos && k < 5; ++k)
    out += "    #" + std::to_string(k + 1) + " " + ranked[k].id + " " + metric_text(ranked[k], in.objective) + " (+" +
           fmt::fixed(100.0 * (value(ranked[k]) / value(r) - 1.0), 1) + "%), differs on: " + differences(ranked[k], r) +
           "\n";
  if (pos > 5) out += "    ... and " + std::to_string(pos - 5) + " more\n";
  return out;
}

}  // namespace

std::string explain_why(const WhyInput& in, const WhyTarget& target) {
  std::string out = explain_kind(in, target);
  // Pruned by a prediction and brought back by a recalibration ('unprune'
  // events): when, and why.
  if (target.trial)
    for (const auto& e : in.events)
      if (e.kind == "unprune") out += "  back from pruned at " + e.time + ": " + e.message + "\n";
  return out;
}

}  // namespace partune
