// The morning-after subcommands' logic, kept out of main.cpp: `tune report`
// (the HTML report), `tune why ID` and `tune plan --rejected`.
#pragma once
#include <optional>
#include <string>

#include "tuner/space/space.h"
#include "tuner/store/store.h"

namespace partune {

struct OpenStudy {
  Store& store;
  std::string db_path;
  std::string study;
  HealthRule health;
  std::string objective;
  const Space* space = nullptr;  // when given with --space: rejected points and axis order
};

// The report's HTML; top: rows of the top-k table.
std::string report_command(const OpenStudy& o, size_t top);

// The report's default path: beside the database, "<db stem>-report.html".
std::string default_report_path(const std::string& db_path);

// `tune why`: the explanation text (InputError for an unknown or ambiguous id).
std::string why_command(const OpenStudy& o, const std::string& id_prefix, bool json = false);

// `tune plan --rejected`: every rejected point with the rule it broke, as a
// table (grouped by rule) or JSON ({"rejected_points": [...], "rejected": {rule: count}}).
std::string plan_rejected_table(const Space& space);
std::string plan_rejected_json(const Space& space);

}  // namespace partune
