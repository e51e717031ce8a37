#include "tuner/study/runner.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/hash.h"
#include "tuner/launch/backend.h"
#include "tuner/launch/command_backend.h"
#include "tuner/launch/cuda_devices.h"
#include "tuner/launch/embedded_backend.h"
#include "tuner/launch/launcher.h"
#include "tuner/launch/slot_ports.h"
#include "tuner/launch/slurm.h"
#include "tuner/launch/trial_slots.h"
#include "tuner/parse/log_parser.h"
#include "tuner/plan/planner.h"
#include "tuner/prune/pruner.h"
#include "tuner/report/report.h"
#include "tuner/search/sampler.h"
#include "tuner/store/store.h"
#include "tuner/study/drive.h"
#include "tuner/study/guard.h"
#include "tuner/study/progress.h"
#include "tuner/study/record.h"
#include "tuner/study/replay.h"
#include "tuner/study/study.h"
#include "tuner/study/trainer_check.h"
#include "tuner/trial/run_metrics.h"
#include "tuner/trial/trial_files.h"

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

}  // namespace

JobConfig trial_config(const Candidate& c, int steps, const std::string& trial_dir) {
  JobConfig cfg = c.config;
  if (!c.axes.count("training.steps")) cfg.set("training.steps", int64_t{steps});
  if (!c.axes.count("metrics.log_freq")) cfg.set("metrics.log_freq", int64_t{1});
  // Isolation from a production base: a trial never writes or loads a
  // checkpoint, never reports to wandb, and keeps every file it writes
  // (dump folder, tensorboard, traces) in its own folder. Paths under the
  // dump folder are made relative, as an absolute one would escape it.
  cfg.set("checkpoint.enable", false);
  cfg.set("metrics.enable_wandb", false);
  cfg.set("job.dump_folder", (fs::path(trial_dir) / "dump").string());
  for (const char* key : {"metrics.save_tb_folder", "profiling.save_traces_folder",
                          "profiling.save_memory_snapshot_folder", "comm.save_traces_folder", "checkpoint.folder"}) {
    const fs::path folder = cfg.get_string(key);
    const bool escapes = folder.is_absolute() ||
                         std::any_of(folder.begin(), folder.end(), [](const fs::path& part) { return part == ".."; });
    if (escapes) cfg.set(key, *find_key_spec(key)->default_value);
  }
  return cfg;
}

namespace {

fs::path tune_path(const RunOptions& opts) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::absolute(opts.tune_exe) : self;
}

// Where trials run: this machine, or job steps of the allocation tune runs in.
struct Placement {
  std::vector<TrialSlot> slots;
  std::optional<SlurmAllocation> slurm;
};

// srun's label "12: " (the task number) off a line; -1 when there is none.
int strip_task_label(std::string_view& line) {
  size_t i = 0;
  while (i < line.size() && i < 6 && line[i] >= '0' && line[i] <= '9') ++i;
  if (i == 0 || line.substr(i, 2) != ": ") return -1;
  const int task = std::stoi(std::string(line.substr(0, i)));
  line.remove_prefix(i + 2);
  return task;
}

// One launch of a trial: processes, live parsing, store writes.
struct Attempt {
  TrialLogState log;
  LaunchResult launch;
  FailureClass failure = FailureClass::None;
  std::string reason;
  TrialMetrics metrics;
  bool ok = false;
  std::vector<double> counted;  // objective per counted step
  bool stopped_early = false;
  std::optional<double> startup_s, host_peak_rss_gib;
};

std::optional<double> step_objective(const StepRow& row, const std::string& objective) {
  if (objective == "tps") return row.tps;
  if (objective == "tflops") return row.tflops;
  return row.mfu;
}

class TrialRunner {
 public:
  // `dir_prefix` names the trial folders: "trial-" (the study's backend),
  // "confirm-" ([confirm]'s production backend).
  TrialRunner(const Space& space, Store& store, Progress& progress, const RunOptions& opts, std::string token,
              std::string run_mark, const Placement& placement, std::string dir_prefix = "trial-")
      : space_(space),
        store_(store),
        progress_(progress),
        opts_(opts),
        token_(std::move(token)),
        run_mark_(std::move(run_mark)),
        placement_(placement),
        dir_prefix_(std::move(dir_prefix)),
        ports_(static_cast<int>(placement.slots.size()), fnv1a64(token_)) {
    results_dir_ = fs::path(space.study.db_path).parent_path() / space.study.name;
  }

  fs::path dir_of(const Candidate& c) const { return results_dir_ / (dir_prefix_ + c.id); }

  // `stop` sees the objective of every counted step as it comes; a reason
  // ends the trial (early stopping), which then counts as done on the steps
  // it ran. `slot`: where it runs. With several trials at once, `shared`
  // is the lock of the store, the progress and `stop` (taken around each
  // use), and `abort` ends the trial when set.
  Attempt run_once(const Candidate& c, int steps, const StopCheck& stop, const TrialSlot& slot,
                   std::mutex* shared = nullptr, const std::atomic<bool>* abort = nullptr) {
    auto hold = [shared] { return shared ? std::unique_lock<std::mutex>(*shared) : std::unique_lock<std::mutex>(); };
    const std::string& study = space_.study.name;
    const fs::path dir = dir_of(c);
    const fs::path config_file = dir / "config.toml";
    // A trial whose folder or files cannot be written (a planted symbolic
    // link) is refused with the reason; the study goes on with the others.
    try {
      prepare_trial_files(c, steps, dir, config_file);
    } catch (const InputError& e) {
      Attempt refused;
      refused.failure = FailureClass::Error;
      refused.reason = e.what();
      return refused;
    }

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

    const std::unique_ptr<Backend> backend =
        make_backend(space_.backend, embedded_trainer_path(space_, opts_.tune_exe));
    const bool slurm = placement_.slurm.has_value();
    // The slot's own port: trials starting together never share one.
    const int master_port = ports_.take(slot.index);
    if (slurm && space_.backend.kind == "torchtitan") {
      ctx.rdzv_endpoint = slot.master_addr + ":" + std::to_string(master_port);
      ctx.node_rank = "{node_rank}";
    }
    const auto* embedded = dynamic_cast<const EmbeddedBackend*>(backend.get());
    std::vector<ProcessSpec> procs;
    if (embedded && slurm) {
      // One node's worth is the template of every task; Slurm spreads them.
      TrialLaunchContext one_node = ctx;
      one_node.nodes = 1;
      procs = embedded->processes(one_node, master_port);
    } else {
      procs = embedded ? embedded->processes(ctx, master_port) : backend->processes(ctx);
    }
    if (slurm)
      procs = {slurm_step(procs, ctx, slot, master_port)};
    else
      pin(procs, slot);

    LaunchOptions lo;
    lo.timeout_s = space_.trial.timeout_s;
    lo.hang_timeout_s = space_.trial.hang_timeout_s;
    lo.log_path = (dir / "output.log").string();

    Attempt a;
    const bool per_rank_pipes = backend->one_process_per_rank() && procs.size() > 1;
    int failure_events = 0, retry_events = 0;
    // Step rows come from the lowest rank that prints them: rank 0 as a
    // rule, but a launcher that shows only other ranks' output still yields
    // rows. Bounded, like TrialLogState's table: a trainer printing a
    // million step lines must grow neither the database nor tune.
    int step_rank = std::numeric_limits<int>::max();
    size_t steps_stored = 0;
    std::optional<std::string> stop_reason;
    lo.stop_requested = [&] {
      auto lock = hold();
      return stop_reason.has_value() || (abort && abort->load());
    };
    std::string srun_error;  // srun's first error line: why a step failed when nothing else says
    // The launcher's line for a program that could not start ("partune:
    // cannot start /x: ..."), the only place that says why.
    std::string start_error;
    const bool torchrun_per_node = slurm && space_.backend.kind == "torchtitan";
    const std::string shown_id = space_.launcher.parallel_trials > 1 ? c.id : "";
    const auto launched_at = Clock::now();
    a.launch = launch(
        procs, lo,
        [&](size_t proc, std::string_view line) {
          auto lock = hold();
          if (slurm && srun_error.empty() && line.rfind("srun: error:", 0) == 0) srun_error = line;
          if (start_error.empty() && line.rfind("partune: cannot ", 0) == 0) start_error = line.substr(9);
          // srun --label numbers lines by task: a rank for one task per rank
          // (the parser reads "3: " as rank 3), a node for torchrun's, whose
          // own "[rankN]:" may follow; an unprefixed line of node t counts as
          // its first rank (node 0's as rank 0).
          int default_rank = per_rank_pipes ? static_cast<int>(proc) : -1;
          if (torchrun_per_node) {
            const int task = strip_task_label(line);
            if (task > 0) default_rank = task * space_.hardware.devices;
          }
          ParsedLine p = a.log.feed(line, default_rank);
          switch (p.kind) {
            case ParsedLine::Kind::Step: {
              const int rank = p.rank >= 0 ? p.rank : per_rank_pipes ? static_cast<int>(proc) : 0;
              if (rank > step_rank) break;
              if (rank < step_rank) a.counted.clear();  // a lower rank's rows replace a higher one's
              step_rank = rank;
              if (steps_stored == TrialLogState::kMaxStepRows) {
                ++steps_stored;
                store_.add_event(study, c.id, "steps_capped",
                                 "more than " + std::to_string(TrialLogState::kMaxStepRows) +
                                     " step lines: later ones are not stored",
                                 {{"rank", rank}});
              }
              if (steps_stored > TrialLogState::kMaxStepRows) break;
              ++steps_stored;
              store_.add_step(study, c.id, p.step, rank);
              progress_.step(p.step, shown_id);
              if (!a.startup_s) a.startup_s = seconds_since(launched_at);
              if (p.step.step > space_.trial.warmup_steps)
                if (auto v = step_objective(p.step, space_.study.objective)) {
                  a.counted.push_back(*v);
                  // The last step ends the trial anyway.
                  if (!stop_reason && stop && p.step.step < steps) stop_reason = stop(a.counted);
                }
              break;
            }
            case ParsedLine::Kind::AllocRetries:
              // Running counts: the first ones and the log file say enough.
              if (retry_events++ < 100)
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
        [&](int pgid) {
          auto lock = hold();
          store_.set_pgid(study, c.id, pgid);
        });
    // A step whose srun did not end cleanly (timeout, hang, stop, a node) may
    // still hold its nodes.
    if (slurm && (trial_exit(a.launch) != std::pair<int, int>{0, 0} || a.launch.stopped))
      cancel_steps(placement_.slurm->job_id, step_name(token_, c.id));
    auto lock = hold();  // the rest writes the store

    // The embedded trainer's metrics files (every rank's memory and retries)
    // are preferred over scraped text when present.
    TrialLogState from_files;
    bool have_files = false;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().rfind("metrics-rank", 0) != 0) continue;
      std::ifstream f(e.path());
      int64_t n = 0;
      for (std::string line; std::getline(f, line);)
        from_files.feed_metrics_json(line, e.path().filename().string() + " line " + std::to_string(++n));
      have_files = true;
    }
    const TrialLogState& best_log = have_files && !from_files.steps().empty() ? from_files : a.log;
    if (&best_log == &from_files)
      for (const auto& row : from_files.steps()) store_.add_step(study, c.id, row, 0);

    if (have_files && from_files.has_init()) {
      // The trainer's own clock, when it reports one, is closer than ours.
      if (from_files.init().startup_s >= 0) a.startup_s = from_files.init().startup_s;
      if (from_files.init().host_peak_rss_gib >= 0) a.host_peak_rss_gib = from_files.init().host_peak_rss_gib;
    }
    if (&best_log == &from_files) {
      a.counted.clear();
      for (const auto& row : from_files.steps())
        if (row.step > space_.trial.warmup_steps)
          if (auto v = step_objective(row, space_.study.objective)) a.counted.push_back(*v);
    }

    const auto [exit_code, signal] = trial_exit(a.launch);
    a.failure = classify_exit(exit_code, signal, a.launch.timed_out, a.launch.hung, a.log);
    if (a.launch.stopped && stop_reason) {
      // Ended by us: the signal is ours, not a crash.
      a.failure = a.log.failure();
      a.stopped_early = true;
      a.reason = *stop_reason;
    }
    if (a.failure == FailureClass::None && have_files) a.failure = from_files.failure();
    a.metrics = best_log.summarize(space_.trial.warmup_steps);
    if (a.failure == FailureClass::None && a.metrics.counted_steps == 0) {
      a.failure = FailureClass::Error;
      a.reason = "no step line after the " + std::to_string(space_.trial.warmup_steps) + " warmup steps";
    }
    if (a.failure != FailureClass::None && a.reason.empty()) {
      if (!a.launch.start_error.empty())
        a.reason = a.launch.start_error;  // "cannot execute PROGRAM: No such file or directory"
      else if (a.launch.timed_out)
        a.reason = "timed out after " + std::to_string(int(space_.trial.timeout_s)) + " s";
      else if (a.launch.hung)
        a.reason = "no output for " + std::to_string(int(space_.trial.hang_timeout_s)) + " s";
      else if (!a.log.failure_message().empty())
        a.reason = a.log.failure_message();
      else if (have_files && !from_files.failure_message().empty())
        a.reason = from_files.failure_message();
      else if (!start_error.empty())
        a.reason = start_error;
      else if (!srun_error.empty())
        a.reason = srun_error;
      else if (signal)
        a.reason = "killed by signal " + std::to_string(signal);
      else
        a.reason = "exit code " + std::to_string(exit_code);
    }
    a.ok = a.failure == FailureClass::None;
    return a;
  }

 private:
  // The trial folder, its job config, and a check that its log can be
  // opened. InputError when one is a symbolic link or cannot be written.
  void prepare_trial_files(const Candidate& c, int steps, const fs::path& dir, const fs::path& config_file) const {
    make_trial_dir(dir);
    // Files of an earlier attempt would mix into this one's metrics.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().filename().string().rfind("metrics-rank", 0) == 0) fs::remove(e.path(), ec);
    write_trial_file(config_file, "# partune trial " + c.id + " of study " + space_.study.name + "\n" +
                                      trial_config(c, steps, fs::absolute(dir).string()).to_toml());
    const fs::path log = dir / "output.log";
    std::FILE* f = open_trial_log(log.string());
    if (!f && errno == ELOOP)
      throw InputError(log.string() + ": is a symbolic link; tune does not write through it (remove it)");
    if (!f) throw InputError(log.string() + ": cannot write: " + std::strerror(errno));
    std::fclose(f);
  }

  // Locally: the slot's devices or CPUs (what [backend] env sets wins).
  void pin(std::vector<ProcessSpec>& procs, const TrialSlot& slot) const {
    for (auto& p : procs) {
      for (const auto& [k, v] : slot.env)
        if (!space_.backend.env.count(k)) p.env[k] = v;
      p.cpus = slot.cpus;
    }
  }

  // Through Slurm: the whole trial is one srun step on the slot's nodes.
  // Embedded: one task per device; Slurm gives each its rank, world and
  // local rank (the trainer reads SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID),
  // MASTER_ADDR is the first node. torchtitan and command: one task per node
  // (torchtitan's through tune's slurm-task helper, which puts the node's
  // SLURM_NODEID in for {node_rank}).
  ProcessSpec slurm_step(const std::vector<ProcessSpec>& procs, const TrialLaunchContext& ctx, const TrialSlot& slot,
                         int master_port) const {
    const bool task_per_rank = space_.backend.kind == "embedded";
    ProcessSpec step = procs.front();
    for (const char* k : {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"}) step.env.erase(k);
    // The tasks may run on other machines: scancel ends them, not the local
    // sweeps, which must not find them either (srun itself dies with tune).
    step.env.erase(kStudyTokenEnv);
    step.env.erase(kRunMarkEnv);
    step.env["MASTER_ADDR"] = slot.master_addr;
    step.env["MASTER_PORT"] = std::to_string(master_port);
    SrunShape shape;
    shape.name = step_name(token_, ctx.trial_id);
    shape.nodes = slot.nodes;
    shape.tasks_per_node = task_per_rank ? ctx.devices : 1;
    shape.gpus_per_node = space_.hardware.device_type == "cuda" ? ctx.devices : 0;
    std::vector<std::string> command = step.argv;
    if (space_.backend.kind == "torchtitan")
      command.insert(command.begin(), {tune_path(opts_).string(), "slurm-task", "--"});
    step.argv = srun_argv(space_.launcher, shape, command);
    return step;
  }

  const Space& space_;
  Store& store_;
  Progress& progress_;
  const RunOptions& opts_;
  std::string token_;
  std::string run_mark_;
  const Placement& placement_;
  std::string dir_prefix_;
  SlotPorts ports_;
  fs::path results_dir_;
};

// The reason of a trial that failed because a node of its slot died
// (Slurm): such trials are requeued when the study resumes.
constexpr std::string_view kNodeDownReason = "node down: ";

// Real trials: processes, through TrialRunner. [trial] repeats > 1 runs a
// request that many times and keeps the medians (a failure ends the repeats).
// One slot: each trial runs on the loop's thread. Several: each on a thread
// of its own; the loop holds `mu_` (the store, the progress, the sampler)
// except while it waits in wait_any, and the trials' threads take it for
// every line they parse and every write.
class ProcessExecutor : public TrialExecutor {
 public:
  // `slurm_job`: the allocation the slots are in ("" locally).
  ProcessExecutor(const Space& space, TrialRunner& runner, Progress& progress, Clock::time_point t0,
                  const std::vector<TrialSlot>& slots, std::string slurm_job)
      : space_(space),
        runner_(runner),
        progress_(progress),
        t0_(t0),
        slots_(slots),
        busy_(slots.size(), false),
        down_(slots.size()),
        slurm_saw_down_(slots.size(), false),
        down_since_(slots.size()),
        slurm_job_(std::move(slurm_job)),
        held_(mu_) {}
  ~ProcessExecutor() override {
    // Only reached with trials running when the loop threw: end them.
    abort_ = true;
    if (held_.owns_lock()) held_.unlock();
    for (auto& [ticket, t] : threads_) t.join();
  }
  double now_s() const override { return seconds_since(t0_); }
  std::string log_dir(const Candidate& c) const override { return runner_.dir_of(c).string(); }
  // The slots whose nodes are up: a slot left out after its node died (see
  // run_in) is asked about again here, each time the loop looks for a free
  // slot, and comes back once Slurm reports its nodes up.
  int slots() const override {
    int usable = 0;
    for (size_t k = 0; k < slots_.size(); ++k) {
      if (!down_[k].empty()) {
        // srun may name a dead node before Slurm has marked it (it waits
        // SlurmdTimeout): such a slot comes back once Slurm has reported the
        // node down and then up, or after kSrunOnlyGraceS without Slurm ever
        // agreeing.
        const bool slurm_says_down = !down_nodes(slurm_job_, slots_[k].nodes).empty();
        if (slurm_says_down) slurm_saw_down_[k] = true;
        const bool back = !slurm_says_down && (slurm_saw_down_[k] || seconds_since(down_since_[k]) > kSrunOnlyGraceS);
        if (back) {
          down_[k].clear();
          progress_.note("slot " + std::to_string(k) + " (" + node_list(slots_[k]) + "): up again; trials start there");
        }
      }
      if (down_[k].empty()) ++usable;
    }
    return usable;
  }

  void start(size_t ticket, const Candidate& c, const TrialRequest& request, StopCheck stop) override {
    if (slots_.size() == 1) return TrialExecutor::start(ticket, c, request, std::move(stop));
    size_t slot = 0;
    while (busy_[slot] || !down_[slot].empty()) ++slot;  // the loop starts a trial only while one is free
    busy_[slot] = true;
    threads_.emplace(ticket, std::thread([this, ticket, &c, request, stop = std::move(stop), slot] {
                       TrialOutcome o;
                       std::exception_ptr error;
                       try {
                         o = run_in(c, request, stop, slots_[slot], &mu_);
                       } catch (...) {
                         error = std::current_exception();
                       }
                       std::lock_guard<std::mutex> lock(mu_);
                       done_.push_back({ticket, slot, std::move(o), error});
                       cv_.notify_all();
                     }));
  }

  std::pair<size_t, TrialOutcome> wait_any() override {
    if (slots_.size() == 1) return TrialExecutor::wait_any();
    cv_.wait(held_, [this] { return !done_.empty(); });
    Done d = std::move(done_.front());
    done_.erase(done_.begin());
    busy_[d.slot] = false;
    threads_.at(d.ticket).join();
    threads_.erase(d.ticket);
    if (d.error) std::rethrow_exception(d.error);
    return {d.ticket, std::move(d.outcome)};
  }

  TrialOutcome run(const Candidate& c, const TrialRequest& request, const StopCheck& stop) override {
    return run_in(c, request, stop, slots_.front(), nullptr);
  }

 private:
  struct Done {
    size_t ticket;
    size_t slot;
    TrialOutcome outcome;
    std::exception_ptr error;
  };

  static constexpr double kSrunOnlyGraceS = 600;
  static constexpr double kVerdictCapS = 330;
  static constexpr double kDefaultMessageTimeoutS = 10;  // Slurm's default MessageTimeout

  // The node of `slot` srun's error names as the one that failed ("Task
  // launch for StepId=J.S failed on node n2: ...", "Node failure on n2"), or "".
  static std::string node_srun_blames(const std::string& reason, const TrialSlot& slot) {
    for (const char* marker : {"failed on node ", "Node failure on "}) {
      const auto at = reason.find(marker);
      if (at == std::string::npos) continue;
      const auto from = at + std::string_view(marker).size();
      const std::string node = reason.substr(from, reason.find_first_of(": ,;", from) - from);
      if (std::find(slot.nodes.begin(), slot.nodes.end(), node) != slot.nodes.end()) return node;
    }
    return "";
  }

  // srun lost a slurmd of the slot without naming its node: Slurm marks a
  // node whose slurmd stopped answering DOWN once SlurmdTimeout has passed
  // and its ping of the node has timed out (MessageTimeout), so ask it
  // until then (plus a margin; at most kVerdictCapS). SlurmdTimeout + 5 s
  // alone missed the verdict on a busy 2-core test cluster (Slurm marked the
  // node only by the time the next trial failed). Only this trial's slot
  // waits (each runs on a thread of its own), and a node that died takes its
  // slot out of use anyway. Nothing down by then: an ordinary failure.
  std::map<std::string, std::string> await_slurms_verdict(const TrialSlot& slot) const {
    const auto slurmd = slurm_config_seconds("SlurmdTimeout"), message = slurm_config_seconds("MessageTimeout");
    const double wait_s =
        slurmd ? std::min(kVerdictCapS, *slurmd + message.value_or(kDefaultMessageTimeoutS) + 5) : kVerdictCapS;
    const auto until = Clock::now() + std::chrono::duration<double>(wait_s);
    std::map<std::string, std::string> down;
    while (down.empty() && Clock::now() < until && !abort_) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      down = down_nodes(slurm_job_, slot.nodes);
    }
    return down;
  }

  static std::string node_list(const TrialSlot& slot) {
    std::string out;
    for (const auto& n : slot.nodes) out += (out.empty() ? "" : ",") + n;
    return out;
  }

  TrialOutcome run_in(const Candidate& c, const TrialRequest& request, const StopCheck& stop, const TrialSlot& slot,
                      std::mutex* shared) {
    std::vector<TrialMetrics> runs;
    Attempt last;
    TrialOutcome o;
    for (int rep = 0; rep < space_.trial.repeats; ++rep) {
      last = runner_.run_once(c, request.steps, stop, slot, shared, &abort_);
      o.wall_s += last.launch.wall_s;
      if (!last.ok) break;
      runs.push_back(last.metrics);
      if (last.stopped_early) break;
    }
    o.status = last.ok ? TrialStatus::Done : TrialStatus::Failed;
    o.failure = last.failure;
    o.reason = last.reason;
    o.metrics = last.ok ? combine_runs(runs, RunStatistic::Median) : last.metrics;
    o.counted = last.counted;
    o.stopped_early = last.stopped_early;
    o.startup_s = last.startup_s;
    o.host_peak_rss_gib = last.host_peak_rss_gib;
    // Through Slurm, a failed trial whose slot has a node down failed
    // because of it: the reason says so (the trial is requeued when the
    // study resumes) and the slot is left out while the node stays down.
    if (o.status == TrialStatus::Failed && !slot.nodes.empty()) {
      auto down = down_nodes(slurm_job_, slot.nodes);
      const bool slurm_agrees = !down.empty();
      if (down.empty())
        if (const std::string node = node_srun_blames(o.reason, slot); !node.empty()) down[node] = "named by srun";
      if (down.empty() && srun_lost_a_slurmd(o.reason)) down = await_slurms_verdict(slot);
      if (!down.empty()) {
        std::string nodes;
        for (const auto& [node, state] : down) nodes += (nodes.empty() ? "" : ", ") + node + " (" + state + ")";
        o.reason = std::string(kNodeDownReason) + nodes + "; " + o.reason;
        auto lock = shared ? std::unique_lock<std::mutex>(*shared) : std::unique_lock<std::mutex>();
        const auto k = static_cast<size_t>(slot.index);
        down_[k] = nodes;
        slurm_saw_down_[k] = slurm_agrees;
        down_since_[k] = Clock::now();
        progress_.note("slot " + std::to_string(slot.index) + " (" + node_list(slot) + "): node " + nodes +
                       " is down: the slot is left out while it stays down; trial " + c.id +
                       " failed with it and is requeued when the study resumes");
      }
    }
    return o;
  }

  const Space& space_;
  TrialRunner& runner_;
  Progress& progress_;
  Clock::time_point t0_;
  const std::vector<TrialSlot>& slots_;
  std::vector<bool> busy_;
  mutable std::vector<std::string> down_;      // per slot: its down nodes; "" while usable
  mutable std::vector<bool> slurm_saw_down_;   // per slot: Slurm has reported its node down since
  std::vector<Clock::time_point> down_since_;  // per slot: when it was left out
  std::string slurm_job_;
  std::mutex mu_;
  std::unique_lock<std::mutex> held_;
  std::condition_variable cv_;
  std::map<size_t, std::thread> threads_;
  std::vector<Done> done_;
  std::atomic<bool> abort_{false};
};

// The slot a production check runs in: locally the first; through Slurm the
// first whose nodes Slurm reports up (a node that died during the study must
// not fail the checks while another slot's nodes can run them). Asked before
// each check: a node may die between two. None up: the first, whose failure
// then says why.
const TrialSlot& production_slot(const Placement& placement, Progress& progress) {
  if (!placement.slurm || placement.slots.size() == 1) return placement.slots.front();
  for (const TrialSlot& slot : placement.slots) {
    const auto down = down_nodes(placement.slurm->job_id, slot.nodes);
    if (down.empty()) return slot;
    progress.note("production check: slot " + std::to_string(slot.index) + " left out (node " + down.begin()->first +
                  " is " + down.begin()->second + ")");
  }
  return placement.slots.front();
}

// [confirm]: the top_k healthy trials, ranked by the study's own measurement,
// re-run once on the production backend. Each run is a new attempt of the
// trial (its step rows under that attempt, its files in confirm-<id>/); the
// trial keeps the study's metrics and gets facts_json.production. A trial
// that has a production measurement already is not re-run (resume).
struct ProductionChecks {
  int64_t ran = 0;
  double wall_s = 0;  // summed wall time of their processes
};
ProductionChecks run_production_checks(const Space& space, Store& store, const std::vector<Candidate>& candidates,
                                       Progress& progress, const RunOptions& opts, const std::string& token,
                                       const std::string& run_mark, const Placement& placement) {
  const std::string& study = space.study.name;
  Space production = space;
  production.backend = space.confirm->backend;
  TrialRunner runner(production, store, progress, opts, token, run_mark, placement, "confirm-");
  std::vector<TrialRecord> own = store.trials(study);
  for (auto& r : own) r.facts.erase("production");  // rank by the study's measurement
  const HealthRule& limit = space.prune;
  const auto top = rank_best(own, space.study.objective, static_cast<size_t>(space.confirm->top_k), limit);
  ProductionChecks done;
  int64_t& ran = done.ran;
  for (const auto& r : top) {
    const TrialRecord now = *store.trial(study, r.id);
    if (now.facts.contains("production")) continue;
    const auto c = std::find_if(candidates.begin(), candidates.end(), [&](const Candidate& x) { return x.id == r.id; });
    if (c == candidates.end()) continue;  // ingested, not in this plan
    progress.note("production check of " + r.id + " on the " + production.backend.kind + " backend ([confirm])");
    store.mark_running(study, r.id, 0, runner.dir_of(*c).string());
    progress.trial_start(++ran, static_cast<int64_t>(top.size()), *c, now.attempt + 1, space.trial.steps);
    Attempt a = runner.run_once(*c, space.trial.steps, {}, production_slot(placement, progress));
    const TrialStatus status = a.ok ? TrialStatus::Done : TrialStatus::Failed;
    const bool healthy = a.ok && !over_memory_limit(a.failure, a.metrics, limit);
    const TrialMetrics& m = a.metrics;
    const nlohmann::json metrics = metrics_to_json(m);
    // The study's own result stays the trial's result; production is beside it.
    store.finish_trial(study, r.id, now.status, now.failure, now.reason, now.metrics, now.wall_s.value_or(0));
    store.set_facts(study, r.id,
                    {{"production",
                      {{"backend", production.backend.kind},
                       {"attempt", now.attempt + 1},
                       {"status", std::string(to_string(status))},
                       {"failure", std::string(to_string(a.failure))},
                       {"reason", a.reason},
                       {"healthy", healthy},
                       {"wall_s", a.launch.wall_s},
                       {"metrics", metrics}}}});
    progress.trial_end(*c, status, a.failure, a.reason, a.metrics, a.launch.wall_s);
    done.wall_s += a.launch.wall_s;
  }
  return done;
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
  // Before the database exists: a config the trainer refuses is bad input.
  if (auto note = check_with_trainer(space, planned.candidates, embedded_trainer_path(space, opts.tune_exe)))
    progress.note("note: " + *note);

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
               {"launcher", space.launcher.kind},
               {"parallel_trials", space.launcher.parallel_trials},
               {"strategy", space.search.strategy},
               {"memory_headroom", space.prune.memory_headroom},
               {"alloc_retries_over_limit", space.prune.alloc_retries_over_limit},
               {"base", space.base.to_json()}};
  row.health = space.prune;
  store.ensure_study(row);
  store.add_candidates(study, planned.candidates);

  // Where the trials run: slots on this machine, or on the nodes of the
  // Slurm allocation tune runs in.
  const std::string token = study_token(space.study.db_path, study);
  Placement placement;
  const int parallel = space.launcher.parallel_trials;
  if (space.launcher.kind == "slurm") {
    placement.slurm = current_allocation(space.path);
    const auto sets = slurm_slot_nodes(placement.slurm->nodes, parallel, space.hardware.nodes, space.path);
    for (int k = 0; k < parallel; ++k) {
      TrialSlot slot;
      slot.index = k;
      slot.nodes = sets[static_cast<size_t>(k)];
      slot.master_addr = placement.slurm->address.at(slot.nodes.front());
      placement.slots.push_back(slot);
    }
    progress.note("slurm: job " + placement.slurm->job_id + ", " + std::to_string(placement.slurm->nodes.size()) +
                  " node(s), " + std::to_string(parallel) + " trial(s) at once as srun steps");
  } else {
    std::vector<std::string> notes;
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    // An emulated trial ([backend] emulate) is one process on one device,
    // whatever the world it stands in for.
    const int devices_per_trial = space.backend.emulate ? 1 : space.hardware.devices;
    placement.slots = local_slots(
        parallel, devices_per_trial, space.hardware.device_type,
        visible ? std::optional<std::string>(visible) : std::nullopt, [] { return cuda_device_count(); },
        allowed_cpus(), space.path, notes);
    for (const auto& n : notes) progress.note("note: " + n);
    if (parallel > 1)
      for (const auto& slot : placement.slots) {
        std::string where;
        for (const auto& [k, v] : slot.env) where += (where.empty() ? "" : " ") + k + "=" + v;
        if (!slot.cpus.empty()) {
          where += " CPUs";
          for (int cpu : slot.cpus) where += " " + std::to_string(cpu);
        }
        progress.note("slot " + std::to_string(slot.index) + ": " + where);
      }
  }
  progress.parallel(parallel);

  // What this run starts dies with it, grandchildren included (see guard.h);
  // through Slurm the guard also cancels the study's steps.
  const std::string run_mark =
      std::to_string(::getpid()) + "-" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  std::function<void()> cancel_study_steps;
  if (placement.slurm)
    cancel_study_steps = [job = placement.slurm->job_id, prefix = step_name_prefix(token)] {
      cancel_steps(job, prefix);
    };
  start_guard(kRunMarkEnv, run_mark, cancel_study_steps);

  // A killed tuner's trial processes hold devices: end them before anything
  // starts (its guard may have been killed with it).
  summary.leftovers_killed = kill_leftovers(kStudyTokenEnv, token);
  if (summary.leftovers_killed)
    progress.note("ended " + std::to_string(summary.leftovers_killed) + " leftover process(es) of an earlier run");
  if (placement.slurm)
    if (int steps = cancel_steps("", step_name_prefix(token)))
      progress.note("cancelled " + std::to_string(steps) + " leftover Slurm step(s) of an earlier run");
  for (const auto& r : store.running_trials(study)) {
    store.reset_to_pending(study, r.id, "left running by a tune that stopped before it finished; run again");
    ++summary.reset;
  }
  int64_t requeued = 0;
  for (const auto& r : store.trials(study))
    if (r.status == TrialStatus::Failed && r.reason.rfind(kNodeDownReason, 0) == 0) {
      store.reset_to_pending(study, r.id, "requeued: it failed because its node died (" + r.reason + ")");
      store.add_event(study, r.id, kRequeueEvent, "requeued: its node died", nlohmann::json::object());
      ++requeued;
    }
  if (requeued) progress.note("requeued " + std::to_string(requeued) + " trial(s) that failed because their node died");

  const std::optional<double> budget = opts.time_budget_s ? opts.time_budget_s : space.search.time_budget_s;
  // The journal of earlier runs, replayed: the resumed study decides what the
  // uninterrupted one decided (replay.h).
  const std::vector<StudyRecord> journal = study_records(store, study);
  Study state(
      space, planned.candidates, store, make_memory_model(space), [t0] { return seconds_since(t0); }, budget,
      journalled_trials(journal));
  auto make = [&space] { return make_sampler(space.search); };
  std::unique_ptr<Sampler> sampler = make();
  const Replayed replayed = replay_study(state, sampler, make, journal);
  state.sync_store();
  const StudyCounts before = state.counts();
  summary.finished_before = before.done + before.failed + before.pruned;
  if (auto best = state.best()) progress.best(state.candidate(*best).id, *state.value(*best), space.study.objective);
  progress.study_start(study, static_cast<int64_t>(planned.candidates.size()), summary.finished_before, before.pending);

  TrialRunner runner(space, store, progress, opts, token, run_mark, placement);
  ProcessExecutor executor(space, runner, progress, t0, placement.slots,
                           placement.slurm ? placement.slurm->job_id : std::string());
  DriveOptions drive;
  drive.replayed = true;
  for (const auto& r : replayed.restart)
    if (state.status(r.index) != TrialStatus::Pruned) drive.restart.push_back(r);
  if (!replayed.matched)
    progress.note(
        "note: this run's search does not retrace the earlier runs' (the space or the time budget "
        "differs); it goes on from their results");
  drive.budget_s = budget;
  drive.max_trials = opts.max_trials ? opts.max_trials : space.search.max_trials;
  const DriveSummary d = drive_study(state, *sampler, executor, progress, drive);
  summary.ran = d.launched;
  summary.trial_wall_s = d.trial_wall_s;
  summary.stopped_by_budget = d.stopped_by_budget;
  summary.parallel = parallel;
  // The production check needs the study's final ranking: not after a stop
  // by budget or max_trials (the next run does it when the study ends).
  if (space.confirm && !d.stopped_by_budget && !d.stopped_by_max_trials) {
    const ProductionChecks checks =
        run_production_checks(space, store, planned.candidates, progress, opts, token, run_mark, placement);
    summary.ran += checks.ran;
    summary.production_wall_s = checks.wall_s;
  }

  const StudyCounts after = state.counts();
  summary.done = after.done;
  summary.failed = after.failed;
  summary.pruned = after.pruned;
  summary.pending = after.pending + after.running;
  summary.candidates = static_cast<int64_t>(planned.candidates.size());
  summary.wall_s = seconds_since(t0);
  return summary;
}

}  // namespace partune
