#include "tuner/launch/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <boost/process/start_dir.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <system_error>

#include "tuner/launch/containment.h"
#include "tuner/trial/trial_files.h"

namespace bp = boost::process;

namespace partune {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Runs in the forked child before execve: only async-signal-safe calls here.
struct ChildSetup : bp::extend::handler {
  pid_t join_pgid = 0;  // 0: lead a new group
  pid_t parent = 0;
  cpu_set_t cpus;  // set before the fork; applied when use_cpus
  bool use_cpus = false;
  int cgroup_procs_fd = -1;      // the trial's cgroup.procs (containment.h); -1: none
  mutable pid_t failed_pid = 0;  // a child that reported a start error, to be reaped

  template <class Executor>
  void on_exec_setup(Executor& e) const {
    if (::setpgid(0, join_pgid) != 0) {
      e.set_error(std::error_code(errno, std::system_category()), "setpgid");
      ::_exit(127);
    }
    if (use_cpus && ::sched_setaffinity(0, sizeof cpus, &cpus) != 0) {
      e.set_error(std::error_code(errno, std::system_category()), "sched_setaffinity");
      ::_exit(127);
    }
    if (cgroup_procs_fd >= 0) {
      // "0": the writing process joins. A failed join is seen by track().
      ssize_t written = ::write(cgroup_procs_fd, "0", 1);
      (void)written;
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the tuner died before prctl took hold
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM})
      ::signal(sig, SIG_DFL);
    // Every descriptor above stderr closes at exec: a trial inherits nothing of
    // the tuner (the database, other trials' pipes). CLOEXEC rather than close
    // so that Boost's exec-error pipe still reports a failed execve.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      long max_fd = ::sysconf(_SC_OPEN_MAX);
      for (int fd = 3; fd < std::min<long>(max_fd < 0 ? 4096 : max_fd, 65536); ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }
  template <class Executor>
  void on_error(Executor& e, const std::error_code&) const {
    if (e.pid > 0) failed_pid = e.pid;
  }
};

// argv[0] as execve needs it: a path, or the first executable of that name on
// PATH (the child's PATH when the spec sets one). Empty: not found.
std::string resolve_program(const ProcessSpec& spec, std::string& why) {
  const std::string& name = spec.argv[0];
  // Why `p` cannot be executed, as execve would say it; "" when it can.
  auto not_executable = [](const std::string& p) -> std::string {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) return std::strerror(errno);
    if (S_ISDIR(st.st_mode)) return std::strerror(EISDIR);
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    if (::access(p.c_str(), X_OK) != 0) return std::strerror(errno);
    return "";
  };
  auto executable = [&](const std::string& p) { return not_executable(p).empty(); };
  if (name.find('/') != std::string::npos) {
    why = not_executable(name);
    if (why.empty()) return name;
    return {};
  }
  std::string path;
  if (auto it = spec.env.find("PATH"); it != spec.env.end())
    path = it->second;
  else if (const char* p = ::getenv("PATH"))
    path = p;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string cand = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (executable(cand)) return cand;
  }
  why = "No such file or directory on PATH (" + (path.empty() ? std::string("PATH is empty") : path) + ")";
  return {};
}

struct Proc {
  bp::child child;
  int fd = -1;
  std::string partial;
  bool running = false;
};

class Run {
 public:
  Run(const std::vector<ProcessSpec>& specs, const LaunchOptions& opts,
      const std::function<void(size_t, std::string_view)>& on_line)
      : specs_(specs), opts_(opts), on_line_(on_line), procs_(specs.size()) {
    result_.exit_codes.assign(specs.size(), 127);
    result_.signals.assign(specs.size(), 0);
    if (opts.contain) containment_ = Containment::create();
    if (!opts.log_path.empty()) {
      log_ = open_trial_log(opts.log_path);  // not through a planted symlink
      if (!log_) throw std::system_error(errno, std::system_category(), "cannot open trial log " + opts.log_path);
      // The cap counts this attempt's output only (log_limit_bytes).
    }
  }
  ~Run() {
    // Only reached with processes alive when a callback threw.
    kill_all_and_reap();
    for (auto& p : procs_)
      if (p.fd >= 0) ::close(p.fd);
    if (log_) std::fclose(log_);
  }

  // Returns false when a process could not be started (the started ones are
  // being ended by then).
  bool start() {
    start_time_ = Clock::now();
    last_output_ = start_time_;
    bp::environment inherited = boost::this_process::environment();
    for (size_t i = 0; i < specs_.size(); ++i) {
      if (!start_one(i, inherited)) {
        begin_kill(SIGKILL);  // what started has done nothing worth a grace period
        return false;
      }
    }
    return true;
  }

  void loop() {
    while (true) {
      reap();
      if (std::none_of(procs_.begin(), procs_.end(), [](const Proc& p) { return p.running; })) break;
      double now_s = seconds_since(start_time_);
      double idle_s = seconds_since(last_output_);
      if (!killing_) {
        if (opts_.timeout_s > 0 && now_s >= opts_.timeout_s) {
          result_.timed_out = true;
          begin_kill(SIGTERM);
        } else if (opts_.hang_timeout_s > 0 && idle_s >= opts_.hang_timeout_s) {
          result_.hung = true;
          begin_kill(SIGTERM);
        } else if (opts_.stop_requested && opts_.stop_requested()) {
          result_.stopped = true;
          begin_kill(SIGTERM);
        }
      }
      if (killing_ && !sigkill_sent_ && seconds_since(term_time_) >= opts_.kill_grace_s) signal_group(SIGKILL);
      if (containment_) containment_->poll();

      // Sleep in poll until output, the next deadline, or a short tick to
      // notice exits.
      double wait_s = 0.05;
      if (!killing_) {
        if (opts_.timeout_s > 0) wait_s = std::min(wait_s, opts_.timeout_s - now_s);
        if (opts_.hang_timeout_s > 0) wait_s = std::min(wait_s, opts_.hang_timeout_s - idle_s);
      } else if (!sigkill_sent_) {
        wait_s = std::min(wait_s, opts_.kill_grace_s - seconds_since(term_time_));
      }
      pump(std::max(0, static_cast<int>(wait_s * 1000)));
    }
    // Every direct child is gone: end whatever they left in the group and
    // whatever left the group (containment.h), then take the output still in
    // the pipes.
    signal_group(SIGKILL);
    end_contained();
    auto drain_start = Clock::now();
    while (std::any_of(procs_.begin(), procs_.end(), [](const Proc& p) { return p.fd >= 0; }) &&
           seconds_since(drain_start) < 2.0)
      pump(50);
    for (size_t i = 0; i < procs_.size(); ++i) close_pipe(i);
    if (log_) std::fflush(log_);
    result_.wall_s = seconds_since(start_time_);
  }

  LaunchResult& result() { return result_; }

 private:
  bool start_one(size_t i, const bp::environment& inherited) {
    const ProcessSpec& spec = specs_[i];
    std::string why;
    std::string program = spec.argv.empty() ? std::string() : resolve_program(spec, why);
    if (spec.argv.empty()) why = "empty argv";
    struct stat st;
    if (program.size() && !spec.cwd.empty() && !(::stat(spec.cwd.c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
      why = "working directory " + spec.cwd + " is not a directory";
      program.clear();
    }
    if (program.empty()) {
      const std::string name = spec.argv.empty() ? std::string("process") : spec.argv[0];
      start_failed(i,
                   (why.rfind("working directory", 0) == 0 ? "cannot start " : "cannot execute ") + name + ": " + why);
      return false;
    }

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      start_failed(i, std::string("cannot start ") + spec.argv[0] + ": pipe: " + std::strerror(errno));
      return false;
    }
    bp::pipe out(fds[0], fds[1]);
    bp::environment env = inherited;
    for (const auto& [k, v] : spec.env) env[k] = v;
    ChildSetup setup;
    setup.join_pgid = result_.pgid;
    setup.parent = ::getpid();
    CPU_ZERO(&setup.cpus);
    for (int cpu : spec.cpus)
      if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &setup.cpus);
    setup.use_cpus = !spec.cpus.empty();
    std::unique_lock<std::mutex> starting;
    if (containment_) {
      setup.cgroup_procs_fd = containment_->child_join_fd();
      starting = Containment::hold_for_start();
    }
    std::error_code ec;
    std::vector<std::string> args(spec.argv.begin() + 1, spec.argv.end());
    bp::child c(bp::exe = program, bp::args = args, env, bp::std_in<bp::null, (bp::std_out & bp::std_err)> out,
                bp::start_dir = spec.cwd.empty() ? std::string(".") : spec.cwd, setup, ec);
    if (ec || !c.valid()) {
      if (setup.failed_pid > 0) ::waitpid(setup.failed_pid, nullptr, 0);
      start_failed(i, "cannot execute " + spec.argv[0] + ": " + ec.message());
      return false;
    }
    if (containment_) containment_->track(c.id());
    if (starting) starting.unlock();
    if (result_.pgid == 0) result_.pgid = c.id();
    ::setpgid(c.id(), result_.pgid);  // the child did it already; this closes no race but costs nothing
    Proc& p = procs_[i];
    p.fd = out.native_source();
    out.assign_source(-1);
    ::fcntl(p.fd, F_SETFL, ::fcntl(p.fd, F_GETFL) | O_NONBLOCK);
    p.child = std::move(c);
    p.running = true;
    return true;
  }

  // The first process that could not be started says why, in the log and
  // in the result (a bare exit code 127 would not).
  void start_failed(size_t i, const std::string& why) {
    if (result_.start_error.empty()) result_.start_error = why;
    emit(i, "partune: " + why);
  }

  void reap() {
    for (size_t i = 0; i < procs_.size(); ++i) {
      Proc& p = procs_[i];
      if (!p.running) continue;
      std::error_code ec;
      if (p.child.running(ec)) continue;
      p.running = false;
      int status = p.child.native_exit_code();
      if (WIFSIGNALED(status)) {
        result_.signals[i] = WTERMSIG(status);
        result_.exit_codes[i] = 128 + WTERMSIG(status);
      } else if (WIFEXITED(status)) {
        result_.exit_codes[i] = WEXITSTATUS(status);
      }
    }
  }

  void begin_kill(int sig) {
    if (killing_) return;
    killing_ = true;
    term_time_ = Clock::now();
    signal_group(sig);
    if (opts_.kill_grace_s <= 0) signal_group(SIGKILL);
  }

  void signal_group(int sig) {
    if (sig == SIGKILL) sigkill_sent_ = true;
    if (result_.pgid > 0) ::killpg(result_.pgid, sig);
  }

  // Reads what is available (waiting up to timeout_ms) and emits whole lines.
  void pump(int timeout_ms) {
    std::vector<pollfd> pfds;
    std::vector<size_t> idx;
    for (size_t i = 0; i < procs_.size(); ++i)
      if (procs_[i].fd >= 0) {
        pfds.push_back({procs_[i].fd, POLLIN, 0});
        idx.push_back(i);
      }
    if (pfds.empty()) {
      if (timeout_ms > 0) ::poll(nullptr, 0, timeout_ms);
      return;
    }
    int n = ::poll(pfds.data(), pfds.size(), timeout_ms);
    if (n <= 0) return;
    // A child that writes faster than its lines are handled keeps the pipe
    // full: reading until it is empty would never return to the loop, and the
    // time limits (checked there) would never be. So one call reads a bounded
    // amount per pipe, and for a bounded time (per pipe: a flooding rank
    // does not starve the others).
    static constexpr size_t kMaxBytesPerCall = size_t{1} << 20;
    static constexpr double kMaxSecondsPerCall = 0.05;
    char buf[65536];
    for (size_t k = 0; k < pfds.size(); ++k) {
      if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      size_t i = idx[k];
      Proc& p = procs_[i];
      const auto read_start = Clock::now();
      size_t taken = 0;
      while (taken < kMaxBytesPerCall && seconds_since(read_start) < kMaxSecondsPerCall) {
        ssize_t got = ::read(p.fd, buf, sizeof buf);
        if (got > 0) {
          last_output_ = Clock::now();
          taken += static_cast<size_t>(got);
          p.partial.append(buf, static_cast<size_t>(got));
          split_lines(i);
          continue;
        }
        if (got < 0 && errno == EINTR) continue;
        if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) close_pipe(i);
        break;
      }
    }
  }

  // Every complete line of what was read: first all into the log, flushed
  // once (a flush per line made tune slower than a child printing short
  // lines), then each to on_line, so the log holds a line before anything
  // the callback does about it can be seen.
  void split_lines(size_t i) {
    static constexpr size_t kMaxLine = 1 << 20;  // a longer "line" is cut, not buffered forever
    std::string& s = procs_[i].partial;
    size_t end = 0;
    for (size_t begin = 0, nl; (nl = s.find('\n', begin)) != std::string::npos; begin = nl + 1) {
      log_line(std::string_view(s).substr(begin, nl - begin));
      end = nl + 1;
    }
    if (log_ && end > 0) std::fflush(log_);
    for (size_t begin = 0, nl; begin < end && (nl = s.find('\n', begin)) != std::string::npos; begin = nl + 1)
      deliver(i, std::string_view(s).substr(begin, nl - begin));
    s.erase(0, end);
    if (s.size() >= kMaxLine) {
      emit(i, s);
      s.clear();
    }
  }

  void close_pipe(size_t i) {
    Proc& p = procs_[i];
    if (p.fd < 0) return;
    if (!p.partial.empty()) {
      std::string rest = std::move(p.partial);
      p.partial.clear();
      emit(i, rest);
    }
    ::close(p.fd);
    p.fd = -1;
  }

  static std::string_view without_cr(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  }

  // Appends a line to the log (buffered; the caller flushes).
  void log_line(std::string_view line) {
    line = without_cr(line);
    if (!log_ || log_full_) return;
    if (log_bytes_ + static_cast<int64_t>(line.size()) + 1 > opts_.log_limit_bytes) {
      log_full_ = true;
      std::fprintf(log_, "partune: output truncated here: this log reached its cap of %lld bytes\n",
                   static_cast<long long>(opts_.log_limit_bytes));
    } else {
      std::fwrite(line.data(), 1, line.size(), log_);
      std::fputc('\n', log_);
      log_bytes_ += static_cast<int64_t>(line.size()) + 1;
    }
  }

  void deliver(size_t i, std::string_view line) {
    if (on_line_) on_line_(i, without_cr(line));
  }

  // One line on its own (a cut or last partial line, a start error).
  void emit(size_t i, std::string_view line) {
    log_line(line);
    if (log_) std::fflush(log_);
    deliver(i, line);
  }

  void kill_all_and_reap() {
    if (std::none_of(procs_.begin(), procs_.end(), [](const Proc& p) { return p.running; })) return;
    signal_group(SIGKILL);
    for (auto& p : procs_) {
      if (!p.running) continue;
      std::error_code ec;
      p.child.wait(ec);
      p.running = false;
    }
    end_contained();
  }

  void end_contained() {
    if (!containment_) return;
    result_.containment = std::string(to_string(containment_->kind()));
    result_.escaped_killed = containment_->end_all();
  }

  const std::vector<ProcessSpec>& specs_;
  const LaunchOptions& opts_;
  const std::function<void(size_t, std::string_view)>& on_line_;
  std::unique_ptr<Containment> containment_;
  std::vector<Proc> procs_;
  LaunchResult result_;
  std::FILE* log_ = nullptr;
  int64_t log_bytes_ = 0;
  bool log_full_ = false;
  Clock::time_point start_time_, last_output_, term_time_;
  bool killing_ = false;
  bool sigkill_sent_ = false;
};

}  // namespace

LaunchResult launch(const std::vector<ProcessSpec>& procs, const LaunchOptions& opts,
                    const std::function<void(size_t proc, std::string_view line)>& on_line,
                    const std::function<void(int pgid)>& on_started) {
  Run run(procs, opts, on_line);
  if (run.start() && on_started) on_started(run.result().pgid);
  run.loop();
  return run.result();
}

std::pair<int, int> trial_exit(const LaunchResult& r) {
  int exit_code = 0, signal = 0;
  for (size_t i = 0; i < r.exit_codes.size(); ++i) {
    if (i < r.signals.size() && r.signals[i] && !signal) signal = r.signals[i];
    if (r.exit_codes[i] && !exit_code) exit_code = r.exit_codes[i];
  }
  return {exit_code, signal};
}

int kill_leftovers(std::string_view env_key, std::string_view token) {
  std::string needle = std::string(env_key) + "=" + std::string(token);
  pid_t self = ::getpid();
  pid_t own_group = ::getpgrp();
  int found = 0;
  DIR* dir = ::opendir("/proc");
  if (!dir) return 0;
  while (dirent* ent = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(ent->d_name, &end, 10);
    if (pid <= 1 || *end != '\0' || pid == self) continue;
    std::ifstream in("/proc/" + std::string(ent->d_name) + "/environ", std::ios::binary);
    if (!in) continue;
    std::string entry;
    bool match = false;
    while (std::getline(in, entry, '\0'))
      if (entry == needle) {
        match = true;
        break;
      }
    if (!match) continue;
    ++found;
    pid_t pgid = ::getpgid(static_cast<pid_t>(pid));
    if (pgid > 1 && pgid != own_group) ::killpg(pgid, SIGKILL);
    ::kill(static_cast<pid_t>(pid), SIGKILL);
  }
  ::closedir(dir);
  return found;
}

}  // namespace partune
