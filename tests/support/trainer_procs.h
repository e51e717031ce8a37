// Trainer processes of multi-process tests: each started as one CPU rank
// (spawn_rank.h) with its output in a log file, reaped with a deadline, and
// described for failure messages.
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/spawn_rank.h"

namespace partune::testing {

struct TrainerProc {
  pid_t pid = -1;
  std::filesystem::path log;
  bool finished = false;
  int status = 0;
  double seconds = 0;  // since the wait's start, when it ended (or was killed)
  std::string output() const {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  bool exited_with(int code) const { return finished && WIFEXITED(status) && WEXITSTATUS(status) == code; }
};

// Starts the trainer as rank `rank` of `world` (world 0: no rank variables
// at all, a one-process run) on the CPU, logging to <dir>/<name>.log, its
// metrics files under <dir>/metrics.
// `more_env` ("KEY=value") adds to, or replaces, those variables.
inline TrainerProc start_trainer(const std::filesystem::path& dir, const std::string& name, int rank, int world,
                                 int port, const std::vector<std::string>& args,
                                 const std::vector<std::string>& more_env = {}) {
  TrainerProc p;
  p.log = dir / (name + ".log");
  RankLaunch l;
  l.program = PARTUNE_TRAINER_BIN;
  l.args = args;
  l.rank = rank;
  l.world = world;
  l.port = port;
  l.rank_env = world > 0;
  for (const std::string& kv : {std::string("OMP_NUM_THREADS=1"), std::string("PARTUNE_DEVICE_TYPE=cpu"),
                                "PARTUNE_METRICS_DIR=" + (dir / "metrics").string()}) {
    const std::string key = kv.substr(0, kv.find('=') + 1);
    bool replaced = false;
    for (const auto& m : more_env) replaced = replaced || m.rfind(key, 0) == 0;
    if (!replaced) l.extra_env.push_back(kv);
  }
  l.extra_env.insert(l.extra_env.end(), more_env.begin(), more_env.end());
  l.log_path = p.log.string();
  std::string error;
  p.pid = spawn_rank(l, &error);
  if (p.pid < 0) ADD_FAILURE() << error;
  return p;
}

// Reaps `procs` until every one of `wait_on` (empty: all of them) has ended
// or `deadline_s` after `t0` has passed, then kills what still runs. Returns
// whether all of `wait_on` ended in time.
inline bool wait_procs(const std::vector<TrainerProc*>& procs, std::chrono::steady_clock::time_point t0,
                       double deadline_s, std::vector<TrainerProc*> wait_on = {}) {
  if (wait_on.empty()) wait_on = procs;
  while (true) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (TrainerProc* p : procs)
      if (!p->finished && ::waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
        p->finished = true;
        p->seconds = t;
      }
    bool all = true;
    for (const TrainerProc* p : wait_on) all = all && p->finished;
    if (all) return true;
    if (t > deadline_s) {
      for (TrainerProc* p : procs)
        if (!p->finished) {
          ::kill(p->pid, SIGKILL);
          ::waitpid(p->pid, &p->status, 0);
          p->seconds = t;
        }
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Each process's log name, how it ended and its output.
inline std::string describe(const std::vector<const TrainerProc*>& procs) {
  std::ostringstream os;
  for (const TrainerProc* p : procs) {
    os << p->log.filename().string() << ": ";
    if (!p->finished)
      os << "killed at the deadline";
    else if (WIFEXITED(p->status))
      os << "exit " << WEXITSTATUS(p->status);
    else
      os << "signal " << WTERMSIG(p->status);
    os << " after " << p->seconds << " s\n" << p->output() << "\n";
  }
  return os.str();
}

}  // namespace partune::testing
