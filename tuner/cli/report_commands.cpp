#include "tuner/cli/report_commands.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/job_keys.h"
#include "common/utc.h"
#include "tuner/plan/planner.h"
#include "tuner/report/format.h"
#include "tuner/report/html_report.h"
#include "tuner/report/why.h"

namespace partune {

std::string report_command(const OpenStudy& o, size_t top) {
  ReportInput in;
  in.study = *o.store.study(o.study);
  in.study.health = o.health;
  in.db_path = o.db_path;
  in.trials = o.store.trials(o.study);
  in.events = o.store.events(o.study);
  in.objective = o.objective;
  in.top = top;
  in.generated_at = utc_now_iso8601();
  if (o.space) {
    in.have_space = true;
    in.rejected = plan(*o.space, true).rejected_points;
    for (const auto& a : o.space->axes) in.axis_keys.push_back(a.key);
  }
  return html_report(in);
}

std::string default_report_path(const std::string& db_path) {
  std::filesystem::path p(db_path);
  return (p.parent_path() / (p.stem().string() + "-report.html")).string();
}

std::string why_command(const OpenStudy& o, const std::string& id_prefix, bool json) {
  WhyInput in;
  in.trials = o.store.trials(o.study);
  in.health = o.health;
  in.objective = o.objective;
  if (o.space) {
    in.have_space = true;
    in.rejected = plan(*o.space, true).rejected_points;
  }
  const WhyTarget target = find_why_target(in, o.study, id_prefix);
  if (target.trial) {
    in.events = o.store.events(o.study, target.trial->id);
    if (target.trial->status == TrialStatus::Failed && !target.trial->log_dir.empty())
      in.log_tail = tail_lines(target.trial->log_dir + "/output.log", 6);
  }
  return json ? why_json(in, target).dump(2) + "\n" : explain_why(in, target);
}

std::string plan_rejected_table(const Space& space) {
  const PlanResult r = plan(space, true);
  std::map<std::string, std::vector<const RejectedPoint*>> by_rule;
  for (const auto& p : r.rejected_points) by_rule[p.rule].push_back(&p);
  std::string out = "rejected points of " + space.path + ": " + std::to_string(r.rejected_points.size()) + " of " +
                    std::to_string(r.enumerated) + "\n";
  for (const auto& [rule, points] : by_rule) {
    out += "\n" + rule + " (" + std::to_string(points.size()) + "):\n";
    fmt::Table t;
    t.column("id");
    for (const auto& a : space.axes) t.column(keys::short_name(a.key));
    t.column("why");
    for (const RejectedPoint* p : points) {
      std::vector<std::string> row = {p->id};
      for (const auto& a : space.axes) {
        auto it = p->axes.find(a.key);
        row.push_back(it == p->axes.end() ? "-" : fmt::value(it->second));
      }
      row.push_back(p->message);
      t.row(std::move(row));
    }
    out += t.render();
  }
  return out;
}

std::string plan_rejected_json(const Space& space) {
  const nlohmann::json j = plan_to_json(plan(space, true));
  return nlohmann::json{{"rejected", j["rejected"]},
                        {"rejected_points", j.value("rejected_points", nlohmann::json::array())}}
             .dump(2) +
         "\n";
}

}  // namespace partune
