// Helpers for tests that touch the filesystem or fork: a temporary folder
// removed at the end, a pipe to hear from a child, and candidate builders.
#pragma once
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/support/temp_dir.h"
#include "tuner/trial/trial.h"

namespace partune::testing {

// A one-way pipe from a forked child: the child writes int64s, the parent reads them.
class Pipe {
 public:
  Pipe() {
    if (pipe(fd_) != 0) std::abort();
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (fd_[0] >= 0) close(fd_[0]);
    fd_[0] = -1;
  }
  void close_write() {
    if (fd_[1] >= 0) close(fd_[1]);
    fd_[1] = -1;
  }
  bool send(int64_t v) { return write(fd_[1], &v, sizeof v) == sizeof v; }
  // False at end of file (the writer is gone).
  bool receive(int64_t& v) {
    size_t got = 0;
    char* p = reinterpret_cast<char*>(&v);
    while (got < sizeof v) {
      ssize_t n = read(fd_[0], p + got, sizeof v - got);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }

 private:
  int fd_[2] = {-1, -1};
};

// Kills a forked child with SIGKILL and reaps it; true if the signal killed it.
inline bool kill9(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

// A candidate over a small base config; the id names the axis values.
inline Candidate candidate(int64_t tp, int64_t ep, int64_t lbs, const std::string& ac = "selective") {
  Candidate c;
  c.axes = {{"parallelism.tensor_parallel_degree", tp},
            {"parallelism.expert_parallel_degree", ep},
            {"training.local_batch_size", lbs},
            {"activation_checkpoint.mode", ac}};
  c.config.set("model.name", std::string("qwen3"));
  c.config.set("model.flavor", std::string("30B-A3B"));
  c.config.set("training.seq_len", int64_t{4096});
  c.config.set("training.steps", int64_t{20});
  c.config.set("optimizer.lr", 3e-4);
  c.config.set("metrics.log_freq", int64_t{1});
  c.config.set("compile.enable", true);
  c.config.set("model.converters", StringList{"float8"});
  for (const auto& [key, value] : c.axes) c.config.set(key, value);
  c.id = "tp" + std::to_string(tp) + "-ep" + std::to_string(ep) + "-b" + std::to_string(lbs) + "-" + ac;
  return c;
}

}  // namespace partune::testing
