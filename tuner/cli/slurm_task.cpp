#include "tuner/cli/slurm_task.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace partune {

int slurm_task_main(int argc, char** args) {
  if (argc < 2 || std::string(args[0]) != "--") {
    std::cerr << "tune slurm-task: usage: tune slurm-task -- PROGRAM [ARGS...]\n";
    return 2;
  }
  const char* node = std::getenv("SLURM_NODEID");
  if (!node || !*node) {
    std::cerr << "tune slurm-task: SLURM_NODEID is not set (run it as a task of an srun step)\n";
    return 2;
  }
  const std::string placeholder = "{node_rank}";
  std::vector<std::string> argv;
  for (int i = 1; i < argc; ++i) {
    std::string a = args[i];
    for (size_t at = a.find(placeholder); at != std::string::npos; at = a.find(placeholder, at + std::strlen(node)))
      a.replace(at, placeholder.size(), node);
    argv.push_back(std::move(a));
  }
  std::vector<char*> c_argv;
  for (auto& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  ::execvp(c_argv[0], c_argv.data());
  std::cerr << "tune slurm-task: cannot run " << argv[0] << ": " << std::strerror(errno) << "\n";
  return 127;
}

}  // namespace partune
