// Whether a process has ended, read from /proc (no wait: it may not be ours).
#pragma once
#include <sys/types.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace partune::testing {

// Gone: /proc has no entry for it, or it is a zombie its parent has not
// reaped yet. Waits up to `wait_s` for that.
inline bool process_gone(pid_t pid, double wait_s = 3.0) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  while (true) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string content;
    if (!stat || !std::getline(stat, content)) return true;
    const size_t paren = content.rfind(')');
    if (paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] == 'Z') return true;
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace partune::testing
