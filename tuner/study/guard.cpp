#include "tuner/study/guard.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>
#include <thread>

#include "tuner/launch/containment.h"
#include "tuner/launch/launcher.h"

namespace partune {

namespace {

[[noreturn]] void guard_main(int watch_fd, const std::string& env_key, const std::string& value, pid_t tune_pid,
                             const std::function<void()>& also) {
  ::setsid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
  // Held descriptors would keep tune's output pipes (and the study lock's
  // file) open past tune's death.
  ::dup2(watch_fd, 3);
  ::close_range(4, ~0U, 0);
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
  if (null > 2) ::close(null);

  char c;
  while (true) {
    ssize_t n = ::read(3, &c, 1);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  // A second sweep catches a process forked while the first one ran.
  kill_leftovers(env_key, value);
  end_run_cgroups(tune_pid);  // descendants that cleared their environment
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  kill_leftovers(env_key, value);
  if (also) also();
  ::_exit(0);
}

}  // namespace

pid_t start_guard(const std::string& env_key, const std::string& value, const std::function<void()>& also) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "guard pipe");
  const pid_t tune_pid = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "fork of the guard");
  if (pid == 0) {
    ::close(fds[1]);
    guard_main(fds[0], env_key, value, tune_pid, also);
  }
  ::close(fds[0]);
  // fds[1] stays open (close-on-exec) for the rest of tune's life: its
  // closing, by the kernel at tune's exit, is the guard's signal.
  return pid;
}

}  // namespace partune
