// The Launcher: runs the processes of one trial and streams what they print.
//
// Promises:
// - every child is started from an argv (execve), never through a shell;
// - all processes of one trial share ONE new process group; timeouts kill the
//   whole group (SIGTERM, then SIGKILL after kill_grace_s), and once every
//   direct child has exited the group is SIGKILLed, and so is every
//   descendant that left the group or cleared its environment (a cgroup per
//   trial, else tune as child subreaper and a walk of /proc: containment.h),
//   so nothing a trial started (workers, grandchildren) outlives it;
// - children die with the tuner (PR_SET_PDEATHSIG = SIGKILL), even on kill -9
//   (the signal follows the calling thread: launch blocks, so it lives as long);
// - children start with default signal dispositions, stdin from /dev/null and
//   no file descriptor of the tuner but stdout/stderr;
// - every direct child is reaped: no zombie is left.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace partune {

struct ProcessSpec {
  std::vector<std::string> argv;           // argv[0]: a path, or a name looked up on PATH
  std::map<std::string, std::string> env;  // added to (overriding) the inherited environment
  std::string cwd;                         // "" : the tuner's working directory
  std::vector<int> cpus;                   // the CPUs it may run on (sched_setaffinity); empty: inherited
};

struct LaunchOptions {
  double timeout_s = 0;       // wall-clock limit of the trial; 0: none
  double hang_timeout_s = 0;  // no output from any process this long = hang; 0: none
  double kill_grace_s = 5;    // SIGTERM -> SIGKILL delay
  // Every output line is appended here as printed (no prefix added: a rank
  // prefix is the child's job); "" : no log file. The file is opened before
  // anything starts; failure to open it throws std::system_error.
  std::string log_path;
  // The log file's size cap for this launch (an attempt): what earlier
  // attempts left in the file does not count, so an attempt after a flooding
  // one still leaves its lines. Past it one note line says so and later lines
  // are still parsed (on_line) but not written, so a trainer printing without
  // end cannot fill the disk. Each batch of lines read is written and
  // flushed before on_line sees any of them (one flush a batch, not a line).
  int64_t log_limit_bytes = int64_t{64} << 20;
  // Polled while the trial runs (after each batch of output lines, and at
  // least every 50 ms): true ends the trial
  // (the whole group, SIGTERM then SIGKILL after kill_grace_s) and sets
  // LaunchResult::stopped. How the study stops a trial that its counted
  // steps already show to be clearly worse than the best (early stopping):
  // the line callback decides, this carries the decision to the loop.
  std::function<bool()> stop_requested;
  // Contain the trial's descendants (containment.h). Off only for processes
  // that are not a trial's.
  bool contain = true;
};

struct LaunchResult {
  // Per process, in spec order. exit_codes: the exit status, or 128 + signal
  // for a process killed by a signal (the shell's convention), 127 for one that
  // could not be started. signals: the killing signal, 0 if none.
  std::vector<int> exit_codes;
  std::vector<int> signals;
  bool timed_out = false;  // the wall-clock limit was reached
  bool hung = false;       // no output for hang_timeout_s
  bool stopped = false;    // ended because stop_requested said so
  double wall_s = 0;
  int pgid = 0;  // the trial's process group (0: nothing started)
  // How the trial's descendants were contained ("cgroup", "subreaper"; "" if
  // not), and how many processes were still alive at its end besides those
  // the group kill reached first (a cgroup counts the whole group).
  std::string containment;
  int escaped_killed = 0;
  // Why a process could not be started ("cannot execute /opt/torchrun: No
  // such file or directory"); "" when all started. Its exit code is 127.
  std::string start_error;
};

// Starts `procs`, feeds each complete output line (stdout and stderr merged per
// process, newline and a trailing '\r' removed; a partial last line is given at
// exit) to `on_line` with the process index, on the calling thread, and
// returns when all have exited. Any output (even a partial line) resets the
// hang clock. `on_started(pgid)` is called once every process is running.
// A process that cannot be started (no such program, bad cwd) gets a line
// "partune: cannot execute PROGRAM: reason" (or "cannot start ...: working
// directory ..."), exit code 127 and LaunchResult::start_error; the others
// are ended. Output is read in bounded batches, so the time limits hold
// however fast a child writes.
// If a callback throws, every process is killed and reaped before the
// exception propagates.
LaunchResult launch(const std::vector<ProcessSpec>& procs, const LaunchOptions& opts,
                    const std::function<void(size_t proc, std::string_view line)>& on_line,
                    const std::function<void(int pgid)>& on_started = {});

// The exit status that stands for a whole trial: the first non-zero exit code
// and the first signal among its processes (in spec order), which may come
// from different ranks (one killed by the OOM killer, its peer exiting 1
// when the collective broke). Returns {exit_code, signal}; {0, 0} when all
// ended cleanly.
std::pair<int, int> trial_exit(const LaunchResult& r);

// Ends what a killed tuner left behind: every process (other than this one)
// whose environment holds `env_key=token` is SIGKILLed, with its process group
// when that group is not ours. Returns how many such processes were found.
// Processes of other users (unreadable environ) are not looked at.
int kill_leftovers(std::string_view env_key, std::string_view token);

}  // namespace partune
