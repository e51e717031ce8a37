#include "tuner/report/html_report.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <optional>
#include <set>

#include "common/job_keys.h"
#include "tuner/estimate/memory_model.h"
#include "tuner/report/exporter.h"
#include "tuner/report/format.h"
#include "tuner/report/report.h"
#include "tuner/report/svg_chart.h"

namespace partune {

namespace {

using svg::escape;
using svg::Shape;
using svg::Style;

// Colour-blind-safe enough to tell apart, and the legend names each.
struct OutcomeLook {
  const char* cls;
  const char* label;
  Style style;
};
const std::vector<OutcomeLook>& outcome_looks() {
  static const std::vector<OutcomeLook> looks = {
      {"healthy", "healthy", {"#1a9850", Shape::Circle, false}},
      {"over-headroom", "over the headroom", {"#f08c00", Shape::Diamond, false}},
      {"retries", "allocation retries", {"#7b3294", Shape::Square, false}},
      {"oom", "out of memory", {"#d7191c", Shape::Cross, false}},
      {"failed", "failed (other)", {"#444444", Shape::Cross, false}},
      {"stopped", "stopped / pruned after running", {"#2c7bb6", Shape::Circle, true}},
  };
  return looks;
}
const OutcomeLook& look_of(const std::string& cls) {
  for (const auto& l : outcome_looks())
    if (cls == l.cls) return l;
  return outcome_looks().back();
}

std::optional<double> epoch(const std::string& iso) {
  if (iso.empty()) return std::nullopt;
  std::tm tm{};
  if (!strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) return std::nullopt;
  return static_cast<double>(timegm(&tm));
}

std::string objective_label(const std::string& objective) {
  if (objective == "mfu") return "MFU (%)";
  if (objective == "tps") return "throughput (tokens/s per device)";
  return "achieved TFLOPS per device";
}

std::string value_text(double v, const std::string& objective) {
  return objective == "mfu" ? fmt::fixed(v, 2) + "%" : objective == "tps" ? fmt::thousands(v) : fmt::fixed(v, 1);
}

std::string axes_text(const std::map<std::string, Value>& axes) {
  std::string out;
  for (const auto& [key, value] : axes)
    out += (out.empty() ? "" : " ") + keys::short_name(key) + "=" + fmt::value(value);
  return out;
}

// The objective a trial ranks by: production where measured healthy, else its own.
std::optional<double> rank_value(const TrialRecord& r, const std::string& objective) {
  if (auto p = production_value(r, objective)) return p;
  return objective_metric(r.metrics, objective);
}

std::string tooltip(const TrialRecord& r, const std::string& objective, const HealthRule& rule) {
  std::string t = r.id + " " + axes_text(r.axes) + "\n" + std::string(to_string(r.status));
  if (r.failure != FailureClass::None) t += " (" + std::string(to_string(r.failure)) + ")";
  if (auto v = objective_metric(r.metrics, objective)) t += ", " + objective + " " + value_text(*v, objective);
  t += ", memory " + fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct);
  if (r.metrics.alloc_retries) t += ", " + std::to_string(r.metrics.alloc_retries) + " retries";
  const std::string why = unhealthy_because(r.status, r.failure, r.metrics, rule);
  if (!why.empty() && r.status == TrialStatus::Done) t += "\nnot healthy: " + why;
  return t;
}

std::string section(const std::string& id, const std::string& title, const std::string& body) {
  return "<section id=\"" + id + "\">\n<h2>" + escape(title) + "</h2>\n" + body + "</section>\n";
}

std::string p(const std::string& text) { return "<p>" + escape(text) + "</p>\n"; }

// An HTML table: cells are escaped; `numeric` columns right-aligned.
std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                  const std::set<size_t>& numeric = {}) {
  std::string o = "<table>\n<tr>";
  for (size_t i = 0; i < header.size(); ++i)
    o += std::string(numeric.count(i) ? "<th class=\"num\">" : "<th>") + escape(header[i]) + "</th>";
  o += "</tr>\n";
  for (const auto& row : rows) {
    o += "<tr>";
    for (size_t i = 0; i < row.size(); ++i)
      o += std::string(numeric.count(i) ? "<td class=\"num\">" : "<td>") + escape(row[i]) + "</td>";
    o += "</tr>\n";
  }
  return o + "</table>\n";
}

struct Context {
  const ReportInput& in;
  const HealthRule& rule;
  std::vector<std::string> axis_keys;
  std::vector<TrialRecord> ranked;  // healthy, best first
  std::optional<double> capacity_gib;
};

std::string summary_section(const Context& c) {
  const auto& in = c.in;
  std::map<std::string, int> by_status;
  for (const auto& t : in.trials) ++by_status[std::string(to_string(t.status))];
  std::string body;
  std::string counts;
  for (const auto& [s, n] : by_status) counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + s;
  body += p(std::to_string(in.trials.size()) + " candidates: " + counts + ". Healthy: done, peak memory within " +
            fmt::fixed(100.0 * c.rule.memory_headroom, 0) + "% of the device" +
            (c.rule.alloc_retries_over_limit ? ", no allocation retries, no OOM" : ", no OOM") + ".");
  if (c.ranked.empty()) {
    body +=
        "<p class=\"warn\">No healthy finished trial yet: nothing to recommend. See the failures and prunes "
        "below.</p>\n";
    return section("summary", "Summary", body);
  }
  const TrialRecord& best = c.ranked.front();
  const double v = *rank_value(best, in.objective);
  std::string lead = "Best healthy config: " + best.id + " (" + axes_text(best.axes) + "), " + in.objective + " " +
                     value_text(v, in.objective);
  if (c.ranked.size() > 1) {
    const double v2 = *rank_value(c.ranked[1], in.objective);
    lead += ", " + fmt::fixed(100.0 * (v / v2 - 1.0), 1) + "% ahead of the runner-up " + c.ranked[1].id;
  }
  if (production_value(best, in.objective)) lead += " (as measured on the production backend)";
  body += "<p class=\"lead\" id=\"best\" data-trial=\"" + escape(best.id) + "\">" + escape(lead + ".") + "</p>\n";
  body += "<p>Its torchtitan job config (<code>tune export --best</code>):</p>\n<pre class=\"toml\">" +
          escape(export_toml(best)) + "</pre>\n";

  // The top k, with repeated runs' mean and spread where there are any.
  std::vector<std::string> header = {"#", "id"};
  for (const auto& k : c.axis_keys) header.push_back(keys::short_name(k));
  header.insert(header.end(), {in.objective, "vs best", "runs", "mean", "spread", "memory"});
  std::set<size_t> numeric;
  for (size_t i = 0; i < header.size(); ++i)
    if (i == 0 || i >= 2 + c.axis_keys.size()) numeric.insert(i);
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < c.ranked.size() && i < in.top; ++i) {
    const TrialRecord& r = c.ranked[i];
    std::vector<std::string> row = {std::to_string(i + 1), r.id};
    for (const auto& k : c.axis_keys) {
      auto it = r.axes.find(k);
      row.push_back(it == r.axes.end() ? "-" : fmt::value(it->second));
    }
    const double rv = *rank_value(r, in.objective);
    row.push_back(value_text(rv, in.objective));
    row.push_back(i == 0 ? "" : fmt::fixed(100.0 * (rv / v - 1.0), 1) + "%");
    const nlohmann::json search = r.facts.value("search", nlohmann::json::object());
    const size_t runs = search.contains("runs") && search["runs"].is_array() ? search["runs"].size() : 1;
    row.push_back(std::to_string(std::max<size_t>(runs, 1)));
    row.push_back(search.contains("mean") ? value_text(search["mean"].get<double>(), in.objective) : "-");
    row.push_back(search.contains("spread") ? fmt::fixed(100.0 * search["spread"].get<double>(), 1) + "%" : "-");
    row.push_back(fmt::memory(r.metrics.memory_gib, r.metrics.memory_pct));
    rows.push_back(std::move(row));
  }
  body += "<h3>Top " + std::to_string(rows.size()) + " healthy trials</h3>\n" + table(header, rows, numeric);
  body +=
      p("runs: full-length runs of the config (the guided search's confirmation re-runs the top results); with "
        "two or more, mean and spread ((max - min) / mean) of the objective over them.");
  return section("summary", "Summary", body);
}

std::string memory_section(const Context& c) {
  const auto& in = c.in;
  svg::Chart chart("mfu-memory", objective_label(in.objective) + " against peak memory, every trial that ran");
  chart.x_axis("peak reserved memory per device (GiB)");
  chart.y_axis(objective_label(in.objective));
  chart.include_y(0);
  std::map<std::string, int> plotted;
  size_t unplotted = 0;
  std::vector<std::pair<double, double>> healthy;
  size_t at_prediction = 0;
  for (const auto& r : in.trials) {
    bool predicted = false;
    const auto x = chart_memory_gib(r, &predicted);
    if (!x) {
      if (r.attempt > 0 && r.status != TrialStatus::Running && r.status != TrialStatus::Pending) ++unplotted;
      continue;
    }
    const std::string cls = outcome_class(r, c.rule);
    const auto v = objective_metric(r.metrics, in.objective);
    // A failure without a measured objective sits on the x axis: its memory is still a fact.
    Style style = look_of(cls).style;
    if (predicted) ++at_prediction;
    chart.point(*x, v.value_or(0), style, cls,
                tooltip(r, in.objective, c.rule) + (predicted ? "\nno step line: drawn at its predicted memory" : ""),
                r.id);
    ++plotted[cls];
    if (cls == "healthy" && v) healthy.emplace_back(*x, *v);
  }
  for (const auto& l : outcome_looks())
    if (plotted.count(l.cls)) chart.legend(std::string(l.label) + " (" + std::to_string(plotted[l.cls]) + ")", l.style);
  if (c.capacity_gib) {
    const double limit = c.rule.memory_headroom * *c.capacity_gib;
    chart.vline(limit, "headroom " + fmt::fixed(100.0 * c.rule.memory_headroom, 0) + "%", "#d7191c");
    chart.legend("headroom (memory limit)", {"#d7191c", Shape::Line, false});
  }
  // Pareto front: healthy trials no other healthy trial beats on both memory and the objective.
  std::sort(healthy.begin(), healthy.end());
  std::vector<std::pair<double, double>> front;
  for (const auto& pt : healthy)
    if (front.empty() || pt.second > front.back().second) front.push_back(pt);
  if (front.size() >= 2) {
    chart.line(front, "#1a9850", true, true);
    chart.legend("Pareto front (healthy)", {"#1a9850", Shape::Line, false});
  }
  std::string body;
  body += chart.render();
  body += p("Each mark is one trial (hover for its id, axes and numbers). Failed trials with no measured " +
            in.objective + " sit at 0" +
            (at_prediction ? "; " + std::to_string(at_prediction) +
                                 " died before their first step line and are drawn at the memory the model "
                                 "predicted at their launch."
                           : std::string(".")) +
            (c.capacity_gib ? " The red line is the headroom: " + fmt::fixed(100.0 * c.rule.memory_headroom, 0) +
                                  "% of " + fmt::fixed(*c.capacity_gib, 1) + " GiB."
                            : std::string(" Device memory unknown: no headroom line.")) +
            (unplotted ? " " + std::to_string(unplotted) + " trial(s) that ran reported no memory and are not plotted."
                       : std::string()));
  return section("memory", "The trade-off: " + objective_label(in.objective) + " against memory", body);
}

std::string effects_section(const Context& c) {
  const auto& in = c.in;
  std::string body;
  const TrialRecord* best = c.ranked.empty() ? nullptr : &c.ranked.front();
  body += p(best ? "Each chart varies one axis. Filled marks: the other axes held at the best config's values (" +
                       best->id +
                       "); hollow marks: no such trial, so the best of all done trials with that value "
                       "(marginal)."
                 : "No healthy best config yet: every mark is the best of all done trials with that value (marginal).");
  size_t charts = 0;
  for (const auto& key : c.axis_keys) {
    std::vector<Value> values;
    for (const auto& r : in.trials)
      if (auto it = r.axes.find(key);
          it != r.axes.end() && std::find(values.begin(), values.end(), it->second) == values.end())
        values.push_back(it->second);
    if (values.size() < 2) continue;
    std::stable_sort(values.begin(), values.end(), [](const Value& a, const Value& b) {
      const auto num = [](const Value& v) -> std::optional<double> {
        if (auto i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
        if (auto d = std::get_if<double>(&v)) return *d;
        return std::nullopt;
      };
      auto na = num(a), nb = num(b);
      return na && nb ? *na < *nb : false;
    });
    std::vector<std::string> names;
    for (const auto& v : values) names.push_back(fmt::value(v));
    const std::string name = keys::short_name(key);
    svg::Chart chart("effect-" + name, objective_label(in.objective) + " by " + name, 490, 300, 170);
    chart.x_categories(name + " (" + key + ")", names);
    chart.y_axis(objective_label(in.objective));
    chart.include_y(0);
    std::set<std::string> classes;
    bool any_marginal = false;
    for (size_t i = 0; i < values.size(); ++i) {
      const TrialRecord* held = nullptr;
      const TrialRecord* marginal = nullptr;
      for (const auto& r : in.trials) {
        if (r.status != TrialStatus::Done || !objective_metric(r.metrics, in.objective)) continue;
        auto it = r.axes.find(key);
        if (it == r.axes.end() || !(it->second == values[i])) continue;
        if (!marginal ||
            *objective_metric(r.metrics, in.objective) > *objective_metric(marginal->metrics, in.objective))
          marginal = &r;
        if (best) {
          bool same = true;
          for (const auto& [k, v] : best->axes)
            if (k != key && (!r.axes.count(k) || !(r.axes.at(k) == v))) same = false;
          if (same) held = &r;
        }
      }
      const TrialRecord* shown = held ? held : marginal;
      if (!shown) continue;
      // Coloured by outcome: a faster config over the headroom is not a better one.
      const std::string outcome = outcome_class(*shown, c.rule);
      Style style = look_of(outcome).style;
      style.hollow = !held;
      chart.point(static_cast<double>(i), *objective_metric(shown->metrics, in.objective), style,
                  std::string(held ? "held " : "marginal ") + outcome,
                  tooltip(*shown, in.objective, c.rule) +
                      (held ? "\nother axes as the best config" : "\nmarginal: the best trial with this value"),
                  shown->id);
      classes.insert(outcome);
      any_marginal = any_marginal || !held;
    }
    for (const auto& l : outcome_looks())
      if (classes.count(l.cls)) chart.legend(l.label, l.style);
    if (any_marginal) chart.legend("hollow: marginal", {"#666666", Shape::Circle, true});
    if (classes.empty()) continue;  // no finished trial has this axis yet
    body += "<div class=\"effect\">" + chart.render() + "</div>\n";
    ++charts;
  }
  if (charts == 0) body += p("No axis has two or more values with finished trials.");
  return section("effects", "Which knobs mattered: per-axis effects", body);
}

std::string time_section(const Context& c) {
  const auto& in = c.in;
  std::optional<double> t0;
  for (const auto& r : in.trials)
    if (auto s = epoch(r.started_at)) t0 = t0 ? std::min(*t0, *s) : *s;
  if (!t0) return section("time", "The study over time", p("No trial has run yet."));
  struct Ev {
    double t;
    int kind;  // 0 launched, 1 finished, 2 pruned, 3 un-pruned (back after a recalibration)
    const TrialRecord* r;
  };
  std::vector<Ev> evs;
  for (const auto& r : in.trials) {
    if (r.attempt > 0)
      if (auto s = epoch(r.started_at)) evs.push_back({*s - *t0, 0, &r});
    if (r.status == TrialStatus::Done || r.status == TrialStatus::Failed)
      if (auto f = epoch(r.finished_at)) evs.push_back({*f - *t0, 1, &r});
  }
  for (const auto& e : in.events)
    if (e.kind == "prune" || e.kind == "unprune")
      if (auto t = epoch(e.time)) evs.push_back({std::max(0.0, *t - *t0), e.kind == "prune" ? 2 : 3, nullptr});
  std::stable_sort(evs.begin(), evs.end(), [](const Ev& a, const Ev& b) { return a.t < b.t; });
  const double span = evs.empty() ? 0 : evs.back().t;
  const bool minutes = span > 600;
  const double unit = minutes ? 60.0 : 1.0;
  const std::string tlabel = std::string("wall time since the first trial started (") + (minutes ? "min" : "s") + ")";

  svg::Chart best_chart("best-over-time", "Best healthy " + in.objective + " so far", 760, 320);
  best_chart.x_axis(tlabel);
  best_chart.y_axis(objective_label(in.objective));
  svg::Chart count_chart("counts-over-time", "Trials launched and candidates pruned", 760, 300);
  count_chart.x_axis(tlabel);
  count_chart.y_axis("count (candidates)");
  std::vector<std::pair<double, double>> best_line, launched{{0, 0}}, pruned{{0, 0}};
  std::optional<double> best;
  int nl = 0, np = 0;
  for (const auto& e : evs) {
    const double x = e.t / unit;
    if (e.kind == 0) launched.emplace_back(x, ++nl);
    if (e.kind == 2) pruned.emplace_back(x, ++np);
    if (e.kind == 3) pruned.emplace_back(x, --np);
    if (e.kind == 1) {
      const auto v = objective_metric(e.r->metrics, in.objective);
      if (v && is_healthy(*e.r, c.rule)) {
        best_chart.point(x, *v, look_of("healthy").style, "finish", tooltip(*e.r, in.objective, c.rule), e.r->id);
        if (!best || *v > *best) {
          best = *v;
          best_line.emplace_back(x, *best);
        }
      }
    }
  }
  best_chart.include_x(0);
  count_chart.include_x(0);
  if (!best_line.empty()) {
    best_line.emplace_back(span / unit, *best);
    best_chart.line(best_line, "#1a9850", false, true);
    best_chart.legend("best so far", {"#1a9850", Shape::Line, false});
    best_chart.legend("a healthy trial finished", look_of("healthy").style);
  } else {
    best_chart.include_y(0);
  }
  launched.emplace_back(span / unit, nl);
  pruned.emplace_back(span / unit, np);
  count_chart.line(launched, "#2c7bb6", false, true);
  count_chart.line(pruned, "#d7191c", false, true);
  count_chart.legend("trials launched (" + std::to_string(nl) + ")", {"#2c7bb6", Shape::Line, false});
  count_chart.legend("candidates pruned (" + std::to_string(np) + ")", {"#d7191c", Shape::Line, false});
  std::string body = best_chart.render() + count_chart.render();
  body +=
      p("Launches are each trial's latest attempt; prunes are the study's prune events, less its un-prunes (a "
        "candidate pruned by the memory model's prediction that a recalibrated model predicts to fit).");
  return section("time", "The study over time", body);
}

std::string prediction_section(const Context& c) {
  const auto& in = c.in;
  svg::Chart chart("predicted-memory", "Memory model: predicted against measured peak memory", 760, 420);
  chart.x_axis("predicted peak memory per device at launch (GiB)");
  chart.y_axis("measured peak reserved memory per device (GiB)");
  size_t n = 0;
  std::vector<double> errors;
  std::map<std::string, int> plotted;
  for (const auto& r : in.trials) {
    bool at_prediction = false;
    if (!chart_memory_gib(r, &at_prediction) || at_prediction || !r.facts.contains("prediction")) continue;
    const auto& pr = r.facts["prediction"];
    if (!pr.value("memory_gib", nlohmann::json()).is_number()) continue;
    const double predicted = pr["memory_gib"].get<double>();
    const std::string cls = outcome_class(r, c.rule);
    chart.point(predicted, *r.metrics.memory_gib, look_of(cls).style, cls,
                tooltip(r, in.objective, c.rule) + "\npredicted " + fmt::fixed(predicted, 2) + " GiB", r.id);
    ++plotted[cls];
    errors.push_back(std::fabs(predicted - *r.metrics.memory_gib) / *r.metrics.memory_gib);
    ++n;
  }
  if (n == 0)
    return section("prediction", "Predicted against measured memory",
                   p("No trial has both a recorded prediction and a measured peak (a study run before partune "
                     "recorded predictions, or none has run)."));
  chart.diagonal("prediction = measurement", "#888888");
  for (const auto& l : outcome_looks())
    if (plotted.count(l.cls)) chart.legend(std::string(l.label) + " (" + std::to_string(plotted[l.cls]) + ")", l.style);
  chart.legend("predicted = measured", {"#888888", Shape::Line, false});
  std::sort(errors.begin(), errors.end());
  const double median = errors[errors.size() / 2];
  std::string body = chart.render();
  body += p(std::to_string(n) + " trials. Median absolute error " + fmt::fixed(100.0 * median, 1) + "%, worst " +
            fmt::fixed(100.0 * errors.back(), 1) +
            "%. The prediction is the one the study made when it launched the trial (the model recalibrates on "
            "every measured trial; docs/memory-model.md).");
  return section("prediction", "Predicted against measured memory", body);
}

std::string pruned_section(const Context& c) {
  const auto& in = c.in;
  constexpr size_t kRowsPerGroup = 50;
  std::string body;
  // Groups: by the trial that pruned them, by the memory model, by other reasons; failures by class; rejections by
  // rule.
  std::map<std::string, std::vector<const TrialRecord*>> groups;
  for (const auto& r : in.trials) {
    if (r.status == TrialStatus::Pruned) {
      if (!r.pruned_by.empty()) {
        const TrialRecord* cause = nullptr;
        for (const auto& t : in.trials)
          if (t.id == r.pruned_by) cause = &t;
        std::string why = cause ? unhealthy_because(cause->status, cause->failure, cause->metrics, c.rule) : "";
        if (cause && cause->failure != FailureClass::None) why = std::string(to_string(cause->failure));
        groups["pruned by trial " + r.pruned_by + (why.empty() ? "" : " (" + why + ")")].push_back(&r);
      } else if (r.attempt == 0 && is_prediction_prune_reason(r.reason)) {
        groups["pruned by the memory model's prediction"].push_back(&r);
      } else {
        groups["pruned: " + r.reason].push_back(&r);
      }
    } else if (r.status == TrialStatus::Failed) {
      groups["failed: " + std::string(to_string(r.failure))].push_back(&r);
    } else if (r.status == TrialStatus::Done && !production_problem(r).empty()) {
      // Done in the study, ruled out by its production check ([confirm]).
      const auto& prod = r.facts["production"];
      const std::string failure = prod.value("failure", std::string());
      groups[prod.value("status", std::string()) == "failed"
                 ? "production check ([confirm]) failed" + (failure.empty() ? "" : ": " + failure)
                 : "production check ([confirm]) not healthy"]
          .push_back(&r);
    }
  }
  size_t total = 0;
  for (const auto& [name, members] : groups) {
    total += members.size();
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < members.size() && i < kRowsPerGroup; ++i)
      rows.push_back({members[i]->id, axes_text(members[i]->axes),
                      members[i]->status == TrialStatus::Done ? production_problem(*members[i]) : members[i]->reason});
    body += "<h3>" + escape(name) + " &mdash; " + std::to_string(members.size()) + "</h3>\n" +
            table({"id", "axes", "reason"}, rows);
    if (members.size() > kRowsPerGroup)
      body += p("... and " + std::to_string(members.size() - kRowsPerGroup) + " more (tune list).");
  }
  if (in.have_space) {
    std::map<std::string, std::vector<const RejectedPoint*>> by_rule;
    for (const auto& pt : in.rejected) by_rule[pt.rule].push_back(&pt);
    for (const auto& [rule, members] : by_rule) {
      total += members.size();
      std::vector<std::vector<std::string>> rows;
      for (size_t i = 0; i < members.size() && i < kRowsPerGroup; ++i)
        rows.push_back({members[i]->id, axes_text(members[i]->axes), members[i]->message});
      body += "<h3>rejected by the planner: " + escape(rule) + " &mdash; " + std::to_string(members.size()) +
              "</h3>\n" + table({"id", "axes", "why"}, rows);
      if (members.size() > kRowsPerGroup)
        body += p("... and " + std::to_string(members.size() - kRowsPerGroup) + " more (tune plan --rejected).");
    }
  } else {
    body += p("Rejected points are listed when the report is made with --space (the planner's rules need the space).");
  }
  if (total == 0) body += p("Nothing was pruned, failed or rejected.");
  body = p("Why a config is missing: every candidate the study pruned or that failed (in the study or in its "
           "production check), and every point of the space the planner rejected, grouped by reason. tune why ID "
           "explains one.") +
         body;
  return section("missing", "Pruned, failed and rejected candidates", body);
}

const char* kStyle = R"css(
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin-bottom: 6px; }
p.meta { color: #555; margin-top: 0; }
p.lead { font-size: 16px; font-weight: bold; }
p.warn { color: #b00; font-weight: bold; }
pre.toml { background: #f6f8fa; border: 1px solid #ddd; padding: 10px; overflow-x: auto; font-size: 12px;
           user-select: all; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; }
th { background: #f0f0f0; }
td.num, th.num { text-align: right; }
svg.chart { display: block; margin: 10px 0; }
svg .chart-title { font-size: 14px; font-weight: bold; }
svg .axis-label { font-size: 12px; }
svg text { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; }
div.effect { display: inline-block; vertical-align: top; }
nav a { margin-right: 12px; }
)css";

}  // namespace

std::string outcome_class(const TrialRecord& r, const HealthRule& rule) {
  if (r.failure == FailureClass::Oom || r.metrics.oom_errors > 0) return "oom";
  if (r.status == TrialStatus::Failed) return "failed";
  if (r.status != TrialStatus::Done) return "stopped";
  if (rule.alloc_retries_over_limit && r.metrics.alloc_retries > 0) return "retries";
  if (r.metrics.memory_pct && *r.metrics.memory_pct > 100.0 * rule.memory_headroom) return "over-headroom";
  return "healthy";
}

std::optional<double> chart_memory_gib(const TrialRecord& r, bool* predicted) {
  const bool ended = r.status == TrialStatus::Done || r.status == TrialStatus::Failed ||
                     (r.status == TrialStatus::Pruned && r.attempt > 0);
  if (predicted) *predicted = false;
  if (!ended) return std::nullopt;
  if (r.metrics.memory_gib) return r.metrics.memory_gib;
  const nlohmann::json pr = r.facts.value("prediction", nlohmann::json::object());
  if (!pr.value("memory_gib", nlohmann::json()).is_number()) return std::nullopt;
  if (predicted) *predicted = true;
  return pr["memory_gib"].get<double>();
}

std::string html_report(const ReportInput& in) {
  Context c{in, in.study.health, in.axis_keys, rank_best(in.trials, in.objective, 0, in.study.health), std::nullopt};
  if (c.axis_keys.empty()) {
    std::set<std::string> seen;
    for (const auto& r : in.trials)
      for (const auto& [k, v] : r.axes)
        if (seen.insert(k).second) c.axis_keys.push_back(k);
  }
  for (const auto& r : in.trials)
    if (r.metrics.memory_gib && r.metrics.memory_pct && *r.metrics.memory_pct > 0) {
      c.capacity_gib = *r.metrics.memory_gib * 100.0 / *r.metrics.memory_pct;
      break;
    }

  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  o += "<title>partune report: " + escape(in.study.name) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  o += "<h1>partune report: study " + escape(in.study.name) + "</h1>\n";
  o += "<p class=\"meta\">" +
       escape("database " + in.db_path + (in.study.space_path.empty() ? "" : ", space " + in.study.space_path) +
              ", objective " + in.objective + ", generated " + in.generated_at + " by tune report") +
       "</p>\n";
  o += "<nav><a href=\"#summary\">Summary</a><a href=\"#memory\">Trade-off</a><a href=\"#effects\">Per-axis "
       "effects</a><a href=\"#time\">Over time</a><a href=\"#prediction\">Predicted memory</a><a "
       "href=\"#missing\">Pruned, failed, rejected</a></nav>\n";
  o += summary_section(c);
  o += memory_section(c);
  o += effects_section(c);
  o += time_section(c);
  o += prediction_section(c);
  o += pruned_section(c);
  o += "</body>\n</html>\n";
  return o;
}

}  // namespace partune
