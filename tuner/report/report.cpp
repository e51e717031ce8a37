#include "tuner/report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <variant>

#include "common/error.h"
#include "common/job_keys.h"
#include "common/printable.h"
#include "tuner/report/format.h"

namespace partune {

namespace {

nlohmann::json opt(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nullptr; }
nlohmann::json opt(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }

// Counters are known once a trial has run to an end (done, failed, or
// pruned after running); before that they are unknown, not zero.
bool counters_known(const TrialRecord& r) {
  return r.status == TrialStatus::Done || r.status == TrialStatus::Failed ||
         (r.status == TrialStatus::Pruned && r.attempt > 0);
}

std::optional<double> objective_value(const TrialRecord& r, const std::string& objective) {
  return objective_metric(r.metrics, objective);
}

nlohmann::json step_to_json(const StepRow& s) {
  return {{"step", s.step},
          {"loss", opt(s.loss)},
          {"grad_norm", opt(s.grad_norm)},
          {"memory_gib", opt(s.memory_gib)},
          {"memory_pct", opt(s.memory_pct)},
          {"tps", opt(s.tps)},
          {"tflops", opt(s.tflops)},
          {"mfu", opt(s.mfu)}};
}

std::string unhealthy_because(const TrialRecord& r, const HealthRule& rule) {
  return partune::unhealthy_because(r.status, r.failure, r.metrics, rule);
}

std::string note_of(const TrialRecord& r) {
  std::string note;
  if (r.failure != FailureClass::None) note = std::string(to_string(r.failure));
  if (!r.reason.empty()) note += (note.empty() ? "" : ": ") + r.reason;
  if (!r.pruned_by.empty()) note += (note.empty() ? "" : " ") + std::string("(by ") + r.pruned_by + ")";
  const std::string production = production_problem(r);
  if (!production.empty()) note += (note.empty() ? "" : "; ") + production;
  return note;
}

}  // namespace

bool is_healthy(const TrialRecord& r, const HealthRule& rule) { return unhealthy_because(r, rule).empty(); }

std::string production_problem(const TrialRecord& r) {
  if (!r.facts.contains("production") || !r.facts["production"].is_object()) return "";
  const auto& p = r.facts["production"];
  if (p.value("healthy", false)) return "";
  const std::string status = p.value("status", std::string()), failure = p.value("failure", std::string()),
                    reason = p.value("reason", std::string());
  if (status == "failed")
    return "production check ([confirm]) failed" + (failure.empty() ? "" : " (" + failure + ")") +
           (reason.empty() ? "" : ": " + reason);
  return "production check ([confirm]) not healthy" + (reason.empty() ? "" : ": " + reason);
}

bool fit_to_train_on(const TrialRecord& r, const HealthRule& rule) {
  return is_healthy(r, rule) && production_problem(r).empty();
}

std::string why_no_best(const std::vector<TrialRecord>& trials, const HealthRule& health) {
  int64_t done = 0, healthy = 0;
  std::vector<std::string> production;
  for (const auto& r : trials) {
    if (r.status != TrialStatus::Done) continue;
    ++done;
    if (!is_healthy(r, health)) continue;
    ++healthy;
    static const std::string kPrefix = "production check ([confirm]) ";
    if (const std::string p = production_problem(r); !p.empty())
      production.push_back(r.id + " " + p.substr(kPrefix.size()));
  }
  if (done == 0) return "no trial of the study is done (`tune list` shows each trial's state)";
  if (healthy == 0)
    return "none of the " + std::to_string(done) +
           " done trials is healthy (over the memory limit, or allocation retries; `tune best --all` shows them)";
  if (!production.empty() && static_cast<int64_t>(production.size()) == healthy) {
    std::string out = "every healthy trial failed its production check ([confirm]), so none is one to train on --";
    for (const auto& line : production) out += " " + line + ";";
    out.pop_back();
    return out;
  }
  return "no healthy done trial reported the objective";
}

nlohmann::json trial_to_json(const TrialRecord& r, bool with_steps, const HealthRule& health) {
  nlohmann::json config = nlohmann::json::object();
  for (const auto& [key, value] : r.axes) config[key] = value_to_json(value);
  const bool known = counters_known(r);
  auto counter = [&](int64_t v) { return known ? nlohmann::json(v) : nlohmann::json(nullptr); };
  const TrialMetrics& m = r.metrics;
  nlohmann::json j = {
      {"id", r.id},
      {"study", r.study},
      {"status", std::string(to_string(r.status))},
      {"failure",
       r.failure == FailureClass::None ? nlohmann::json(nullptr) : nlohmann::json(std::string(to_string(r.failure)))},
      {"reason", r.reason},
      {"config", config},
      {"metrics",
       {{"mfu", opt(m.mfu)},
        {"tps", opt(m.tps)},
        {"tflops", opt(m.tflops)},
        {"memory_gib", opt(m.memory_gib)},
        {"memory_pct", opt(m.memory_pct)},
        {"alloc_retries", counter(m.alloc_retries)},
        {"oom_errors", counter(m.oom_errors)},
        {"counted_steps", counter(m.counted_steps)}}},
      {"healthy", is_healthy(r, health)},
      {"attempt", r.attempt},
      {"wall_s", opt(r.wall_s)},
      {"started_at", opt(r.started_at)},
      {"finished_at", opt(r.finished_at)},
      {"pruned_by", opt(r.pruned_by)},
      {"source", r.source},
  };
  if (with_steps) {
    nlohmann::json full = nlohmann::json::object();
    for (const auto& [key, value] : r.config.values()) full[key] = value_to_json(value);
    j["job_config"] = full;
    nlohmann::json steps = nlohmann::json::array();
    for (const StepRow& s : r.steps) steps.push_back(step_to_json(s));
    j["steps"] = steps;
  }
  return j;
}

std::optional<double> objective_metric(const TrialMetrics& m, const std::string& objective) {
  if (objective == "mfu") return m.mfu;
  if (objective == "tps") return m.tps;
  if (objective == "tflops") return m.tflops;
  throw InputError("objective '" + objective + "': expected mfu, tps or tflops");
}

std::optional<double> production_value(const TrialRecord& r, const std::string& objective) {
  if (!r.facts.contains("production")) return std::nullopt;
  const auto& p = r.facts["production"];
  if (!p.value("healthy", false) || !p.contains("metrics")) return std::nullopt;
  const auto& m = p["metrics"];
  if (!m.contains(objective) || !m[objective].is_number()) return std::nullopt;
  return m[objective].get<double>();
}

std::vector<TrialRecord> rank_best(std::vector<TrialRecord> trials, const std::string& objective, size_t top,
                                   const HealthRule& health, bool include_all) {
  objective_value(TrialRecord{}, objective);  // rejects an unknown objective even with no trials
  std::erase_if(trials, [&](const TrialRecord& r) {
    if (r.status != TrialStatus::Done || !objective_value(r, objective)) return true;
    // Unhealthy in production ([confirm]) is not one to train on either.
    const bool production_failed = r.facts.contains("production") && !production_value(r, objective);
    return !include_all && (!is_healthy(r, health) || production_failed);
  });
  // Trials measured in production first, by that measurement; then the rest.
  std::stable_sort(trials.begin(), trials.end(), [&](const TrialRecord& a, const TrialRecord& b) {
    const auto pa = production_value(a, objective), pb = production_value(b, objective);
    if (pa.has_value() != pb.has_value()) return pa.has_value();
    const double va = pa ? *pa : *objective_value(a, objective), vb = pb ? *pb : *objective_value(b, objective);
    if (va != vb) return va > vb;
    return a.id < b.id;
  });
  if (top != 0 && trials.size() > top) trials.resize(top);
  return trials;
}

std::string trials_table(const std::vector<TrialRecord>& trials, const TableOptions& options) {
  // Axis columns in job-config schema order (training, parallelism, ..., then
  // keys the schema does not know); numeric columns right-aligned.
  std::vector<std::string> axis_keys;
  std::map<std::string, bool> numeric;
  for (const auto& r : trials)
    for (const auto& [key, value] : r.axes) {
      const bool is_number = std::holds_alternative<int64_t>(value) || std::holds_alternative<double>(value);
      auto [it, added] = numeric.emplace(key, is_number);
      if (added) axis_keys.push_back(key);
      it->second = it->second && is_number;
    }
  auto schema_index = [](const std::string& key) {
    const auto& schema = job_config_schema();
    for (size_t i = 0; i < schema.size(); ++i)
      if (schema[i].key == key) return i;
    return schema.size();
  };
  std::stable_sort(axis_keys.begin(), axis_keys.end(), [&](const std::string& a, const std::string& b) {
    const size_t ia = schema_index(a), ib = schema_index(b);
    return ia != ib ? ia < ib : a < b;
  });
  // Short names, unless two axes would share one.
  std::map<std::string, int> uses;
  for (const auto& key : axis_keys) ++uses[keys::short_name(key)];

  fmt::Table table;
  if (options.rank) table.column("#", true);
  table.column("id").column("status");
  for (const auto& key : axis_keys) {
    const std::string s = keys::short_name(key);
    table.column(uses[s] > 1 ? key : s, numeric[key]);
  }
  table.column("mfu%", true).column("tps", true).column("memory", true).column("retries", true);
  if (options.health) table.column("healthy");
  table.column("note");

  size_t rank = 0;
  for (const auto& r : trials) {
    std::vector<std::string> row;
    if (options.rank) row.push_back(std::to_string(++rank));
    row.push_back(r.id);
    row.push_back(std::string(to_string(r.status)));
    for (const auto& key : axis_keys) {
      auto it = r.axes.find(key);
      row.push_back(it == r.axes.end() ? "-" : fmt::value(it->second));
    }
    row.push_back(fmt::opt_fixed(r.metrics.mfu, 2));
    row.push_back(r.metrics.tps ? fmt::thousands(*r.metrics.tps) : "-");
    row.push_back(fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct));
    row.push_back(counters_known(r) ? std::to_string(r.metrics.alloc_retries) : "-");
    if (options.health) row.push_back(fit_to_train_on(r, options.health_rule) ? "yes" : "no");
    row.push_back(note_of(r));
    table.row(std::move(row));
  }
  return table.render();
}

std::string trial_detail(const TrialRecord& r, const HealthRule& health) {
  std::string out;
  // Every text from the database printed escaped (common/printable.h); the
  // job config's strings are escaped by its TOML writer.
  out += "trial " + printable(r.id) + "  (study " + printable(r.study) + ", source " + printable(r.source) + ")\n";
  out += "status: " + std::string(to_string(r.status));
  if (r.failure != FailureClass::None) out += " (" + std::string(to_string(r.failure)) + ")";
  out += "  attempt: " + std::to_string(r.attempt) + "\n";
  if (!r.reason.empty()) out += "reason: " + printable(r.reason) + "\n";
  if (!r.pruned_by.empty()) out += "pruned by: " + printable(r.pruned_by) + "\n";
  if (!r.started_at.empty()) out += "started: " + printable(r.started_at) + "\n";
  if (!r.finished_at.empty()) out += "finished: " + printable(r.finished_at) + "\n";
  if (r.wall_s) out += "wall time: " + fmt::fixed(*r.wall_s, 1) + " s\n";
  if (!r.log_dir.empty()) out += "logs: " + printable(r.log_dir) + "\n";

  out += "\naxes:\n";
  for (const auto& [key, value] : r.axes)
    out += "  " + printable(key) + " = " + printable(value_to_string(value)) + "\n";

  const TrialMetrics& m = r.metrics;
  out += "\nsummary:\n";
  out += "  mfu: " + (m.mfu ? fmt::fixed(*m.mfu, 2) + "%" : "-") + "\n";
  out += "  tps: " + (m.tps ? fmt::thousands(*m.tps) : "-") + "\n";
  out += "  tflops: " + fmt::opt_fixed(m.tflops, 2) + "\n";
  out += "  memory: " + fmt::memory(m.memory_gib, m.memory_pct) + "\n";
  if (counters_known(r)) {
    out += "  alloc retries: " + std::to_string(m.alloc_retries) + "\n";
    out += "  oom errors: " + std::to_string(m.oom_errors) + "\n";
    out += "  counted steps: " + std::to_string(m.counted_steps) + "\n";
  }
  const std::string why = unhealthy_because(r, health);
  out += "  healthy: " + (why.empty() ? std::string("yes") : "no (" + why + ")") + "\n";
  if (!r.facts.empty()) out += "  facts: " + printable(r.facts.dump()) + "\n";

  out += "\njob config:\n" + r.config.to_toml();

  out += "\nsteps (attempt " + std::to_string(r.attempt) + "):";
  if (r.steps.empty()) return out + " none\n";
  out += "\n";
  fmt::Table table;
  table.column("step", true).column("loss", true).column("grad_norm", true);
  table.column("memory", true).column("tps", true).column("tflops", true).column("mfu%", true);
  for (const StepRow& s : r.steps) {
    table.row({std::to_string(s.step), fmt::opt_fixed(s.loss, 5), fmt::opt_fixed(s.grad_norm, 4),
               fmt::memory(s.memory_gib, s.memory_pct), s.tps ? fmt::thousands(*s.tps) : "-",
               fmt::opt_fixed(s.tflops, 2), fmt::opt_fixed(s.mfu, 2)});
  }
  return out + table.render();
}

}  // namespace partune
