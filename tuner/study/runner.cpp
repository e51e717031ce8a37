#include "tuner/study/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.h"
#include "common/hash.h"
#include "tuner/launch/backend.h"
#include "tuner/launch/command_backend.h"
#include "tuner/launch/launcher.h"
#include "tuner/parse/log_parser.h"
#include "tuner/plan/planner.h"
#include "tuner/prune/pruner.h"
#include "tuner/report/report.h"
#include "tuner/search/strategy.h"
#include "tuner/store/store.h"
#include "tuner/study/guard.h"
#include "tuner/study/progress.h"

namespace fs = std::filesystem;

namespace partune {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

// The trial's job config: the candidate's production config plus what a short
// trial needs (its step count, a step line every step). Not exported.
JobConfig trial_config(const Candidate& c, const Space& space) {
  JobConfig cfg = c.config;
  if (!c.axes.count("training.steps")) cfg.set("training.steps", int64_t{space.trial.steps});
  if (!c.axes.count("metrics.log_freq")) cfg.set("metrics.log_freq", int64_t{1});
  return cfg;
}

std::string trainer_path(const Space& space, const RunOptions& opts) {
  if (!space.backend.trainer.empty()) return space.backend.trainer;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) self = fs::absolute(opts.tune_exe);
  return (self.parent_path() / "trainer").string();
}

// One launch of a trial: processes, live parsing, store writes.
struct Attempt {
  TrialLogState log;
  LaunchResult launch;
  FailureClass failure = FailureClass::None;
  std::string reason;
  TrialMetrics metrics;
  bool ok = false;
};

class TrialRunner {
 public:
  TrialRunner(const Space& space, Store& store, Progress& progress, const RunOptions& opts, std::string token,
              std::string run_mark)
      : space_(space),
        store_(store),
        progress_(progress),
        opts_(opts),
        token_(std::move(token)),
        run_mark_(std::move(run_mark)) {
    results_dir_ = fs::path(space.study.db_path).parent_path() / space.study.name;
  }

  Attempt run_once(const Candidate& c) {
    const std::string& study = space_.study.name;
    const fs::path dir = results_dir_ / ("trial-" + c.id);
    fs::create_directories(dir);
    // Files of an earlier attempt would mix into this one's metrics.
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("metrics-rank", 0) == 0) fs::remove(e.path());
    const fs::path config_file = dir / "config.toml";
    {
      std::ofstream f(config_file);
      f << "# partune trial " << c.id << " of study " << study << "\n" << trial_config(c, space_).to_toml();
      if (!f) throw InputError(config_file.string() + ": cannot write the trial config");
    }
    store_.mark_running(study, c.id, 0, dir.string());

    TrialLaunchContext ctx;
    ctx.trial_id = c.id;
    ctx.config_file = fs::absolute(config_file).string();
    ctx.log_dir = fs::absolute(dir).string();
    ctx.devices = space_.hardware.devices;
    ctx.nodes = space_.hardware.nodes;
    ctx.device_type = space_.hardware.device_type;
    for (const auto& [k, v] : space_.backend.env) ctx.extra_env[k] = substitute_placeholders(v, ctx);
    ctx.extra_env[kStudyTokenEnv] = token_;
    ctx.extra_env[kRunMarkEnv] = run_mark_;
    ctx.extra_env["PARTUNE_TRIAL_ID"] = c.id;
    ctx.extra_env["PARTUNE_DEVICE_TYPE"] = space_.hardware.device_type;
    if (space_.hardware.memory_gib)
      ctx.extra_env["PARTUNE_DEVICE_MEMORY_GIB"] = std::to_string(*space_.hardware.memory_gib);
    if (space_.hardware.peak_tflops)
      ctx.extra_env["PARTUNE_PEAK_FLOPS"] = std::to_string(*space_.hardware.peak_tflops * 1e12);

    const std::unique_ptr<Backend> backend = make_backend(space_.backend, trainer_path(space_, opts_));
    const std::vector<ProcessSpec> procs = backend->processes(ctx);

    LaunchOptions lo;
    lo.timeout_s = space_.trial.timeout_s;
    lo.hang_timeout_s = space_.trial.hang_timeout_s;
    lo.log_path = (dir / "output.log").string();

    Attempt a;
    const bool per_rank_pipes = backend->one_process_per_rank() && procs.size() > 1;
    int failure_events = 0;
    a.launch = launch(
        procs, lo,
        [&](size_t proc, std::string_view line) {
          ParsedLine p = a.log.feed(line, per_rank_pipes ? static_cast<int>(proc) : -1);
          switch (p.kind) {
            case ParsedLine::Kind::Step:
              if (p.rank <= 0 && (!per_rank_pipes || proc == 0)) {
                store_.add_step(study, c.id, p.step, 0);
                progress_.step(p.step);
              }
              break;
            case ParsedLine::Kind::AllocRetries:
              store_.add_event(study, c.id, "alloc_retries", p.message, {{"count", p.count}, {"rank", p.rank}});
              break;
            case ParsedLine::Kind::Failure:
              // A failing job can print thousands of lines; the first ones say why.
              if (failure_events++ < 20)
                store_.add_event(study, c.id, "error", p.message,
                                 {{"failure", std::string(to_string(p.failure))}, {"rank", p.rank}});
              break;
            default:
              break;
          }
        },
        [&](int pgid) { store_.set_pgid(study, c.id, pgid); });

    // The embedded trainer's metrics files (every rank's memory and retries)
    // are preferred over scraped text when present.
    TrialLogState from_files;
    bool have_files = false;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().rfind("metrics-rank", 0) != 0) continue;
      std::ifstream f(e.path());
      for (std::string line; std::getline(f, line);) from_files.feed_metrics_json(line);
      have_files = true;
    }
    const TrialLogState& best_log = have_files && !from_files.steps().empty() ? from_files : a.log;
    if (&best_log == &from_files)
      for (const auto& row : from_files.steps()) store_.add_step(study, c.id, row, 0);

    int exit_code = 0, signal = 0;
    for (size_t i = 0; i < a.launch.exit_codes.size(); ++i) {
      if (a.launch.signals[i] && !signal) signal = a.launch.signals[i];
      if (a.launch.exit_codes[i] && !exit_code) exit_code = a.launch.exit_codes[i];
    }
    a.failure = classify_exit(exit_code, signal, a.launch.timed_out, a.launch.hung, a.log);
    if (a.failure == FailureClass::None && have_files) a.failure = from_files.failure();
    a.metrics = best_log.summarize(space_.trial.warmup_steps);
    if (a.failure == FailureClass::None && a.metrics.counted_steps == 0) {
      a.failure = FailureClass::Error;
      a.reason = "no step line after the " + std::to_string(space_.trial.warmup_steps) + " warmup steps";
    }
    if (a.failure != FailureClass::None && a.reason.empty()) {
      if (a.launch.timed_out)
        a.reason = "timed out after " + std::to_string(int(space_.trial.timeout_s)) + " s";
      else if (a.launch.hung)
        a.reason = "no output for " + std::to_string(int(space_.trial.hang_timeout_s)) + " s";
      else if (!a.log.failure_message().empty())
        a.reason = a.log.failure_message();
      else if (have_files && !from_files.failure_message().empty())
        a.reason = from_files.failure_message();
      else if (signal)
        a.reason = "killed by signal " + std::to_string(signal);
      else
        a.reason = "exit code " + std::to_string(exit_code);
    }
    a.ok = a.failure == FailureClass::None;
    return a;
  }

 private:
  const Space& space_;
  Store& store_;
  Progress& progress_;
  const RunOptions& opts_;
  std::string token_;
  std::string run_mark_;
  fs::path results_dir_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Repeats of one trial: medians of the runs' medians, the largest memory, all retries.
TrialMetrics combine(const std::vector<TrialMetrics>& runs) {
  if (runs.size() == 1) return runs.front();
  TrialMetrics out;
  auto med = [&](std::optional<double> TrialMetrics::*field) -> std::optional<double> {
    std::vector<double> v;
    for (const auto& r : runs)
      if (r.*field) v.push_back(*(r.*field));
    if (v.empty()) return std::nullopt;
    return median(v);
  };
  auto max = [&](std::optional<double> TrialMetrics::*field) -> std::optional<double> {
    std::optional<double> m;
    for (const auto& r : runs)
      if (r.*field && (!m || *(r.*field) > *m)) m = r.*field;
    return m;
  };
  out.mfu = med(&TrialMetrics::mfu);
  out.tps = med(&TrialMetrics::tps);
  out.tflops = med(&TrialMetrics::tflops);
  out.memory_gib = max(&TrialMetrics::memory_gib);
  out.memory_pct = max(&TrialMetrics::memory_pct);
  for (const auto& r : runs) {
    out.alloc_retries += r.alloc_retries;
    out.oom_errors += r.oom_errors;
    out.counted_steps += r.counted_steps;
  }
  return out;
}

}  // namespace

std::string study_token(const std::string& db_path, const std::string& study) {
  std::error_code ec;
  fs::path abs = fs::weakly_canonical(fs::absolute(db_path), ec);
  return fnv1a64_hex((ec ? db_path : abs.string()) + '\n' + study);
}

RunSummary run_study(const Space& space, const RunOptions& opts, std::ostream& out) {
  const auto t0 = Clock::now();
  RunSummary summary;
  const std::string& study = space.study.name;
  Progress progress(out, opts.live);

  PlanResult planned = plan(space);
  if (planned.candidates.empty())
    throw InputError(space.path + ": no legal candidate in the search space (run `tune plan --space " + space.path +
                     "` to see which rules rejected them)");
  for (const auto& n : planned.notes) progress.note("note: " + n);

  Store store = Store::open(space.study.db_path);
  StudyLock lock = StudyLock::acquire(space.study.db_path, study);

  StudyRow row;
  row.name = study;
  row.space_path = space.path;
  {
    std::ifstream f(space.path);
    std::stringstream ss;
    ss << f.rdbuf();
    row.space_text = ss.str();
  }
  row.objective = space.study.objective;
  row.facts = {{"host", hostname()},
               {"device_type", space.hardware.device_type},
               {"devices", space.hardware.devices},
               {"nodes", space.hardware.nodes},
               {"backend", space.backend.kind},
               {"memory_headroom", space.prune.memory_headroom},
               {"alloc_retries_over_limit", space.prune.alloc_retries_over_limit}};
  store.ensure_study(row);
  store.add_candidates(study, planned.candidates);

  // What this run starts dies with it, grandchildren included (see guard.h).
  const std::string run_mark =
      std::to_string(::getpid()) + "-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  start_guard(kRunMarkEnv, run_mark);

  // A killed tuner's trial processes hold devices: end them before anything
  // starts (its guard may have been killed with it).
  const std::string token = study_token(space.study.db_path, study);
  summary.leftovers_killed = kill_leftovers(kStudyTokenEnv, token);
  if (summary.leftovers_killed)
    progress.note("ended " + std::to_string(summary.leftovers_killed) + " leftover process(es) of an earlier run");
  for (const auto& r : store.running_trials(study)) {
    store.reset_to_pending(study, r.id, "left running by a tune that stopped before it finished; run again");
    ++summary.reset;
  }

  std::map<std::string, TrialRecord> records;
  for (auto& r : store.trials(study)) records.emplace(r.id, std::move(r));
  std::set<std::string> in_plan;
  for (const auto& c : planned.candidates) in_plan.insert(c.id);

  auto status_of = [&](const std::string& id) { return store.trial(study, id)->status; };
  int64_t launched_total = 0;  // trials of this study run so far (any run), for max_trials
  std::optional<std::pair<std::string, double>> best;
  for (const auto& [id, r] : records) {
    if (!in_plan.count(id)) continue;
    if (r.status != TrialStatus::Pending) ++summary.finished_before;
    if (r.status == TrialStatus::Done || r.status == TrialStatus::Failed) ++launched_total;
    if (r.status == TrialStatus::Done)
      if (auto v = objective_metric(r.metrics, space.study.objective); v && (!best || *v > best->second))
        best = {id, *v};
  }
  if (best) progress.best(best->first, best->second, space.study.objective);
  const std::optional<int64_t> max_trials = opts.max_trials ? opts.max_trials : space.search.max_trials;

  auto strategy = make_strategy(space.search);
  const auto order = strategy->order(planned.candidates);
  auto pending_count = [&]() {
    int64_t n = 0;
    for (size_t i : order)
      if (status_of(planned.candidates[i].id) == TrialStatus::Pending) ++n;
    return n;
  };
  progress.study_start(study, static_cast<int64_t>(planned.candidates.size()), summary.finished_before,
                       pending_count());

  TrialRunner runner(space, store, progress, opts, token, run_mark);
  const HealthRule& limit = space.prune;
  int64_t index = 0;
  const int64_t total = static_cast<int64_t>(order.size());
  for (size_t i : order) {
    ++index;
    const Candidate& c = planned.candidates[i];
    if (status_of(c.id) != TrialStatus::Pending) continue;
    if (max_trials && launched_total >= *max_trials) {
      progress.note("max_trials (" + std::to_string(*max_trials) + ") reached");
      break;
    }
    if (opts.time_budget_s && seconds_since(t0) >= *opts.time_budget_s) {
      summary.stopped_by_budget = true;
      progress.note("time budget of " + std::to_string(int(*opts.time_budget_s)) +
                    " s reached; run the same command again to resume");
      break;
    }
    progress.remaining(pending_count());
    std::vector<TrialMetrics> runs;
    Attempt last;
    double wall = 0;
    for (int rep = 0; rep < space.trial.repeats; ++rep) {
      progress.trial_start(index, total, c, store.trial(study, c.id)->attempt + 1, space.trial.steps);
      last = runner.run_once(c);
      wall += last.launch.wall_s;
      summary.trial_wall_s += last.launch.wall_s;
      if (!last.ok) break;
      runs.push_back(last.metrics);
    }
    ++summary.ran;
    ++launched_total;
    const TrialMetrics metrics = last.ok ? combine(runs) : last.metrics;
    const TrialStatus status = last.ok ? TrialStatus::Done : TrialStatus::Failed;
    store.finish_trial(study, c.id, status, last.failure, last.reason, metrics, wall);
    progress.trial_end(c, status, last.failure, last.reason, metrics, wall);
    if (status == TrialStatus::Done)
      if (auto v = objective_metric(metrics, space.study.objective); v && (!best || *v > best->second)) {
        best = {c.id, *v};
        progress.best(c.id, *v, space.study.objective);
      }

    // Over the memory limit: what needs at least as much memory is not worth a run.
    if (auto why = over_memory_limit(last.failure, metrics, limit)) {
      std::vector<const Candidate*> pending;
      for (const auto& other : planned.candidates)
        if (status_of(other.id) == TrialStatus::Pending) pending.push_back(&other);
      for (const auto& d : dominated_by(c, *why, pending))
        if (store.mark_pruned(study, d.candidate_id, d.reason, c.id)) progress.pruned(d.candidate_id, d.reason);
    }
  }

  for (const auto& r : store.trials(study)) {
    if (!in_plan.count(r.id)) continue;
    switch (r.status) {
      case TrialStatus::Done:
        ++summary.done;
        break;
      case TrialStatus::Failed:
        ++summary.failed;
        break;
      case TrialStatus::Pruned:
        ++summary.pruned;
        break;
      default:
        ++summary.pending;
        break;
    }
  }
  summary.candidates = static_cast<int64_t>(planned.candidates.size());
  summary.wall_s = seconds_since(t0);
  return summary;
}

}  // namespace partune
