// tune: the search controller's command line. Exit codes: 0 ok; 1 tune itself
// failed (e.g. the database); 2 bad input, with a message naming the file,
// key or flag; 3 a study another tune is running; 4 none of the study's
// trials finished (every one launched failed), whether this run launched
// them or an earlier one did.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string_view>

#include "common/error.h"
#include "common/printable.h"
#include "tuner/cli/plan_output.h"
#include "tuner/cli/report_commands.h"
#include "tuner/cli/slurm_task.h"
#include "tuner/plan/planner.h"
#include "tuner/report/exporter.h"
#include "tuner/report/report.h"
#include "tuner/space/duration.h"
#include "tuner/space/space.h"
#include "tuner/store/store.h"
#include "tuner/study/ingest.h"
#include "tuner/study/runner.h"
#include "tuner/study/trainer_check.h"

namespace fs = std::filesystem;
using namespace partune;

namespace {

constexpr int kExitBusy = 3;
constexpr int kExitNoTrialFinished = 4;

struct DbArgs {
  std::string db;
  std::string space;
  std::string study;
};

void add_db_args(CLI::App* cmd, DbArgs& a) {
  cmd->add_option("--db", a.db, "results database (default: the one the space names)");
  cmd->add_option("--space", a.space, "search-space file (names the study and its database)");
  cmd->add_option("--study", a.study, "study name (default: the database's only study)");
}

struct Opened {
  Store store;
  std::string study;
  HealthRule health;
  std::string objective = "mfu";
  std::optional<JobConfig> base;  // the study's [base], as its last run recorded it
};

Opened open_db(const DbArgs& a) {
  std::string db = a.db, study = a.study;
  if (!a.space.empty()) {
    Space s = load_space(a.space);
    if (db.empty()) db = s.study.db_path;
    if (study.empty()) study = s.study.name;
  }
  if (db.empty()) throw InputError("give --db FILE or --space FILE");
  Store store = Store::open(db, Store::Mode::Existing);
  if (study.empty()) {
    auto names = store.studies();
    if (names.size() != 1) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw InputError(db + ": holds " + std::to_string(names.size()) + " studies (" + list +
                       "); choose one with --study");
    }
    study = names.front();
  }
  auto row = store.study(study);
  if (!row) throw InputError(db + ": no study named '" + study + "'");
  // The study's own rule, as its run recorded it.
  Opened o{std::move(store), study, row->health, "mfu", std::nullopt};
  if (!row->objective.empty()) o.objective = row->objective;
  if (row->facts.contains("base")) o.base = JobConfig::from_json(row->facts["base"], db + ": study facts base");
  return o;
}

// Counts and durations have one parser and one range each, whether they
// come from the command line or the space file (tuner/space/duration.h).
// A count: decimal digits only (CLI11 alone would read "0x10" as 16 and
// "010" as 8), at least `lo`; the text is rewritten to its plain decimal
// form before CLI11 converts it.
CLI::Validator count_at_least(int64_t lo) {
  return CLI::Validator(
      [lo](std::string& text) -> std::string {
        const auto v = parse_count(text);
        if (!text.empty() && text[0] == '-') return "'" + text + "' is negative";
        if (!v) return "'" + text + "' is not a whole number in decimal digits";
        if (*v < lo) return "must be >= " + std::to_string(lo) + ", got " + text;
        text = std::to_string(*v);
        return "";
      },
      "INTEGER>=" + std::to_string(lo));
}

// A duration: "8h", "90m", "1h30m" or seconds, in the range of every limit.
CLI::Validator duration_text() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (!text.empty() && text[0] == '-') return "'" + text + "' is negative";
        const auto d = parse_duration(text);
        if (!d) return "'" + text + "' is not a duration (8h, 90m, 1h30m or seconds, in decimal digits)";
        return duration_problem(*d);
      },
      "DURATION");
}

void check_format(const std::string& format, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (format == a) return;
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  throw InputError("--format: '" + format + "' is not one of " + list);
}

void write_output(const std::string& text, const std::string& path) {
  if (path.empty() || path == "-") {
    std::cout << text;
    return;
  }
  std::ofstream f(path);
  f << text;
  if (!f) throw InputError(path + ": cannot write");
  std::cerr << "wrote " << path << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  // The Slurm launcher's per-node helper: an exec, before any parsing.
  if (argc >= 2 && std::string_view(argv[1]) == "slurm-task") return slurm_task_main(argc - 2, argv + 2);
  CLI::App app{"tune: find the fastest parallelism configuration for a training job"};
  app.require_subcommand(0, 1);

  // run (also the default: `tune --space F`)
  std::string space_path;
  std::optional<std::string> budget;
  std::optional<int64_t> max_trials;
  bool plain = false;
  app.add_option("--space", space_path, "search-space file: runs the study (same as `tune run --space F`)");
  auto* run = app.add_subcommand("run", "run or resume a study");
  run->add_option("--space", space_path, "search-space file")->required();
  for (auto* cmd : {&app, run}) {
    cmd->add_option("--time-budget", budget,
                    "end the study after this long (8h, 90m, 1h30m or seconds); run again to resume")
        ->check(duration_text());
    cmd->add_option("--max-trials", max_trials, "launch at most this many trials in this run")
        ->check(count_at_least(1));
    cmd->add_flag("--plain", plain, "one line per event even on a terminal");
  }

  std::string format = "table";
  auto* plan_cmd = app.add_subcommand("plan", "list the legal candidates; launches nothing");
  plan_cmd->add_option("--space", space_path, "search-space file")->required();
  plan_cmd->add_option("--format", format, "table | json");
  bool plan_rejected = false;
  plan_cmd->add_flag("--rejected", plan_rejected, "list every rejected point with the rule it broke");

  DbArgs db_args;
  auto* list = app.add_subcommand("list", "every trial of a study");
  add_db_args(list, db_args);
  list->add_option("--format", format, "table | json");

  std::string trial_id;
  auto* show = app.add_subcommand("show", "one trial: config, summary, steps");
  add_db_args(show, db_args);
  show->add_option("id", trial_id, "trial id (a unique prefix is enough)")->required();
  show->add_option("--format", format, "table | json");

  size_t top = 5;
  std::string objective;
  bool all = false;
  auto* best = app.add_subcommand("best", "the best healthy trials, best first");
  add_db_args(best, db_args);
  best->add_option("--top", top, "how many (0: all)")->check(count_at_least(0));
  best->add_option("--objective", objective, "mfu | tps | tflops (default: the study's)");
  best->add_flag("--all", all, "also trials over the memory headroom or with allocation retries, flagged");
  best->add_option("--format", format, "table | json");

  bool export_best = false;
  std::string out_path;
  auto* exp = app.add_subcommand("export", "a trial as a torchtitan job config");
  add_db_args(exp, db_args);
  auto* eb = exp->add_flag("--best", export_best, "the best healthy trial");
  auto* et = exp->add_option("--trial", trial_id, "trial id (a unique prefix is enough)");
  eb->excludes(et);
  exp->add_option("--objective", objective, "mfu | tps | tflops, for --best (default: the study's)");
  exp->add_option("--format", format, "toml | cli | json (default toml)");
  exp->add_option("-o,--output", out_path, "write to this file instead of stdout");

  std::string report_path;
  size_t report_top = 10;
  auto* report = app.add_subcommand("report", "the morning report: one self-contained HTML file with plots");
  add_db_args(report, db_args);
  report->add_option("-o,--output", report_path, "HTML file to write (default: <db>-report.html beside the db)");
  report->add_option("--top", report_top, "rows of the top-k table")->check(count_at_least(0));

  auto* why = app.add_subcommand("why", "why one candidate is where it is: rejected, pruned, failed, or its rank");
  add_db_args(why, db_args);
  why->add_option("id", trial_id, "candidate id (a unique prefix is enough)")->required();
  why->add_option("--format", format, "table | json (table: the explanation as text)");

  IngestOptions ingest;
  auto* ing = app.add_subcommand("ingest", "record runs done outside tune as finished trials");
  ing->add_option("--space", ingest.space_path,
                  "the study's space file: a run of a planned config becomes that candidate's result");
  ing->add_option("--db", ingest.db_path, "results database (default: the space's)");
  ing->add_option("--study", ingest.study, "study name (default: the space's)");
  ing->add_option("--config", ingest.config_path, "the runs' torchtitan job config")->required();
  ing->add_option("--warmup-steps", ingest.warmup_steps, "steps not counted in the medians")->check(count_at_least(0));
  ing->add_option("logs", ingest.logs, "log files, one run each")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "tune: error: " << printable(e.what()) << "\n";
    return kExitBadInput;
  }

  try {
    auto resolve_trial = [&](Opened& o) -> TrialRecord {
      std::vector<TrialRecord> matches;
      for (auto& r : o.store.trials(o.study))
        if (r.id.rfind(trial_id, 0) == 0) matches.push_back(std::move(r));
      if (matches.empty()) throw InputError("study '" + o.study + "': no trial with id '" + trial_id + "'");
      if (matches.size() > 1)
        throw InputError("study '" + o.study + "': id prefix '" + trial_id + "' matches " +
                         std::to_string(matches.size()) + " trials; give more digits");
      return *o.store.trial_with_steps(o.study, matches.front().id);
    };

    if (*plan_cmd) {
      check_format(format, {"table", "json"});
      Space space = load_space(space_path);
      if (plan_rejected) {
        std::cout << (format == "json" ? plan_rejected_json(space) : plan_rejected_table(space));
        return kExitOk;
      }
      PlanResult r = plan(space);
      // What the embedded trainer would refuse is refused here, not at launch.
      if (auto note = check_with_trainer(space, r.candidates, embedded_trainer_path(space, argv[0])))
        r.notes.push_back(*note);
      if (format == "json")
        std::cout << printable_json(plan_output_json(space, r).dump(2)) << "\n";
      else
        std::cout << plan_output_table(space, r);
      return kExitOk;
    }
    if (*list) {
      check_format(format, {"table", "json"});
      Opened o = open_db(db_args);
      auto trials = o.store.trials(o.study);
      if (format == "json") {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& t : trials) arr.push_back(trial_to_json(t, false, o.health));
        std::cout << printable_json(arr.dump(2)) << "\n";
      } else {
        TableOptions to;
        to.health_rule = o.health;
        std::cout << trials_table(trials, to);
      }
      return kExitOk;
    }
    if (*show) {
      check_format(format, {"table", "json"});
      Opened o = open_db(db_args);
      TrialRecord r = resolve_trial(o);
      if (format == "json")
        std::cout << printable_json(trial_to_json(r, true, o.health).dump(2)) << "\n";
      else
        std::cout << trial_detail(r, o.health);
      return kExitOk;
    }
    if (*best) {
      check_format(format, {"table", "json"});
      Opened o = open_db(db_args);
      auto ranked = rank_best(o.store.trials(o.study), objective.empty() ? o.objective : objective, top, o.health, all);
      if (format == "json") {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& t : ranked) arr.push_back(trial_to_json(t, false, o.health));
        std::cout << printable_json(arr.dump(2)) << "\n";
      } else {
        TableOptions to;
        to.rank = true;
        to.health = all;
        to.health_rule = o.health;
        if (ranked.empty())
          std::cerr << (all ? std::string("no finished trial yet")
                            : "no healthy finished trial: " + why_no_best(o.store.trials(o.study), o.health))
                    << "\n";
        else
          std::cout << trials_table(ranked, to);
      }
      return kExitOk;
    }
    if (*exp) {
      if (!exp->count("--format")) format = "toml";
      check_format(format, {"toml", "cli", "json"});
      if (!export_best && trial_id.empty()) throw InputError("tune export: give --best or --trial ID");
      Opened o = open_db(db_args);
      TrialRecord r;
      if (export_best) {
        auto ranked = rank_best(o.store.trials(o.study), objective.empty() ? o.objective : objective, 1, o.health);
        if (ranked.empty())
          throw InputError("study '" + o.study +
                           "': no healthy finished trial to export: " + why_no_best(o.store.trials(o.study), o.health));
        r = *o.store.trial_with_steps(o.study, ranked.front().id);
      } else {
        r = resolve_trial(o);
      }
      // An ingested run's config is its own, not the base with axes.
      const std::optional<JobConfig> base = r.source == "tune" ? o.base : std::nullopt;
      std::string text = format == "toml"  ? export_toml(r, base)
                         : format == "cli" ? export_cli(r) + "\n"
                                           : printable_json(export_json(r, base).dump(2)) + "\n";
      write_output(text, out_path);
      return kExitOk;
    }
    if (*report || *why) {
      Opened o = open_db(db_args);
      std::optional<Space> space;
      if (!db_args.space.empty()) space = load_space(db_args.space);
      std::string db_path = db_args.db.empty() && space ? space->study.db_path : db_args.db;
      OpenStudy s{o.store, db_path, o.study, o.health, o.objective, space ? &*space : nullptr};
      if (*why) {
        check_format(format, {"table", "json"});
        std::cout << why_command(s, trial_id, format == "json");
        return kExitOk;
      }
      write_output(report_command(s, report_top), report_path.empty() ? default_report_path(db_path) : report_path);
      return kExitOk;
    }
    if (*ing) {
      ingest_runs(ingest, std::cout);
      return kExitOk;
    }
    if (space_path.empty()) {
      std::cerr << app.help();
      return kExitBadInput;
    }
    Space space = load_space(space_path);
    RunOptions opts;
    opts.tune_exe = argv[0];
    if (budget) opts.time_budget_s = parse_duration(*budget);
    opts.max_trials = max_trials;
    opts.live = !plain && isatty(STDOUT_FILENO);
    RunSummary s = run_study(space, opts, std::cout);
    std::cout << "study " << space.study.name << ": " << s.done << " done, " << s.failed << " failed, " << s.pruned
              << " pruned, " << s.pending << " pending of " << s.candidates << " candidates; ran " << s.ran
              << " trials in " << s.wall_s << " s (tuner overhead " << s.overhead_per_trial_s() << " s per trial)\n";
    if (s.done > 0) {
      auto trials = Store::open(space.study.db_path, Store::Mode::Existing).trials(space.study.name);
      auto ranked = rank_best(trials, space.study.objective, 3, space.prune);
      if (!ranked.empty()) {
        TableOptions to;
        to.rank = true;
        to.health_rule = space.prune;
        std::cout << "best so far:\n" << trials_table(ranked, to);
      } else {
        std::cout << "no best: " << why_no_best(trials, space.prune) << "\n";
      }
    }
    std::cout << "results: " << space.study.db_path << " (tune best --space " << space.path << ")\n";
    // The study's state, not this run's: a re-run of a study whose every
    // trial failed launches nothing and must not turn that into success.
    if (s.done == 0 && (s.ran > 0 || s.failed > 0)) {
      std::cerr << "tune: error: every trial failed: " << s.ran << " launched by this run, " << s.failed
                << " failed and " << s.pruned << " pruned in the study, none done (`tune list --space " << space.path
                << "` shows why); exit code " << kExitNoTrialFinished << "\n";
      return kExitNoTrialFinished;
    }
    return kExitOk;
  } catch (const InputError& e) {
    std::string msg = e.what();
    std::cerr << "tune: error: " << printable(msg) << "\n";
    return msg.find("is being run by another tune") != std::string::npos ? kExitBusy : kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "tune: error: " << printable(e.what()) << "\n";
    return kExitFailure;
  }
}
