// Multi-process tests: start one rank of a world as a real process, with the
// torchrun-style environment the trainer reads, argv only (posix_spawn, no
// shell), stdout and stderr into a log file.
#pragma once
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace partune::testing {

// A loopback TCP port free at the time of the call (for MASTER_PORT).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

struct RankLaunch {
  std::string program;
  std::vector<std::string> args;
  int rank = 0;
  int world = 1;
  int port = 0;
  bool rank_env = true;                // false: no RANK / WORLD_SIZE / ... at all (a one-process run)
  std::vector<std::string> extra_env;  // "KEY=value"; replaces an inherited KEY
  std::string log_path;                // stdout and stderr, truncated
};

// Starts the rank; returns its pid, or -1 with the reason in *error.
inline pid_t spawn_rank(const RankLaunch& l, std::string* error) {
  // Inherited rank variables (the test may itself run under torchrun or srun)
  // and the keys extra_env sets are dropped.
  std::vector<std::string> drop = {
      "RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=", "SLURM_PROCID="};
  for (const auto& kv : l.extra_env) drop.push_back(kv.substr(0, kv.find('=') + 1));
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    bool keep = true;
    for (const auto& d : drop) keep = keep && kv.rfind(d, 0) != 0;
    if (keep) env.push_back(kv);
  }
  if (l.rank_env) {
    env.push_back("RANK=" + std::to_string(l.rank));
    env.push_back("WORLD_SIZE=" + std::to_string(l.world));
    env.push_back("LOCAL_RANK=" + std::to_string(l.rank));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(l.world));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(l.port));
  }
  env.insert(env.end(), l.extra_env.begin(), l.extra_env.end());
  std::vector<char*> envp;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> argv_s{l.program};
  argv_s.insert(argv_s.end(), l.args.begin(), l.args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, l.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    if (error) *error = "posix_spawn " + l.program + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

}  // namespace partune::testing
