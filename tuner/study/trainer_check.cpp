#include "tuner/study/trainer_check.h"

#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "tuner/study/runner.h"

extern char** environ;

namespace partune {

namespace fs = std::filesystem;

namespace {

// An anonymous in-memory file: the trainer's stdin and stdout. Files, not
// pipes, so neither side can block the other however many configs there are.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(memfd_create(name, MFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  int fd() const { return fd_; }
  void write_all(const std::string& text) {
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::pwrite(fd_, text.data() + done, text.size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error(std::string("write: ") + std::strerror(errno));
      done += static_cast<size_t>(n);
    }
  }
  std::string read_all() const {
    std::string text;
    char buf[65536];
    for (off_t at = 0;;) {
      const ssize_t n = ::pread(fd_, buf, sizeof buf, at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return text;
      text.append(buf, static_cast<size_t>(n));
      at += n;
    }
  }

 private:
  int fd_;
};

// Runs `argv` with stdin from `in`, stdout to `out`, stderr to `err`; its
// exit status, or throws after `timeout_s` (killed).
int run_to_end(const std::vector<std::string>& argv, const MemFile& in, const MemFile& out, const MemFile& err,
               double timeout_s) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.fd(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, out.fd(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err.fd(), STDERR_FILENO);
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (auto& a : args) raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, raw[0], &fa, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw InputError(argv[0] + ": cannot run the embedded trainer: " + std::strerror(rc));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      throw std::runtime_error(argv[0] + " --check did not answer within " + std::to_string(int(timeout_s)) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// "path:line:col: key 'K'" for the key the trainer named: the axis that set
// it, else the [base] key, else the space file.
std::string located(const Space& space, const Candidate& c, const std::string& key) {
  if (!key.empty() && c.axes.count(key)) {
    auto at = space.origins.find("space." + key);
    return (at == space.origins.end() ? space.path : at->second) + ": key 'space." + key + "'";
  }
  if (!key.empty()) {
    auto at = space.origins.find(key);
    return (at == space.origins.end() ? space.path : at->second) + ": key '" + key + "'";
  }
  return space.path;
}

}  // namespace

std::string embedded_trainer_path(const Space& space, const std::string& tune_exe) {
  if (!space.backend.trainer.empty()) return space.backend.trainer;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) self = fs::absolute(tune_exe);
  return (self.parent_path() / "trainer").string();
}

std::optional<std::string> check_with_trainer(const Space& space, const std::vector<Candidate>& candidates,
                                              const std::string& trainer) {
  if (space.backend.kind != "embedded" || candidates.empty()) return std::nullopt;
  if (::access(trainer.c_str(), X_OK) != 0)
    return "the embedded trainer " + trainer + " is not there to check the configs with (trainer --check)";
  const fs::path trial_root = fs::path(space.study.db_path).parent_path() / space.study.name;
  std::string lines;
  for (const Candidate& c : candidates) {
    const JobConfig cfg = trial_config(c, space.trial.steps, (trial_root / ("trial-" + c.id)).string());
    lines += nlohmann::json{{"world_size", space.hardware.world_size()}, {"config", cfg.to_json()}}.dump() + "\n";
  }
  MemFile in("partune-check-in"), out("partune-check-out"), err("partune-check-err");
  in.write_all(lines);
  const int status = run_to_end({trainer, "--check", "--stdin"}, in, out, err, 300);
  if (status != 0)
    throw std::runtime_error(trainer + " --check --stdin failed (status " + std::to_string(status) +
                             "): " + err.read_all());
  std::istringstream answers(out.read_all());
  std::string line;
  for (const Candidate& c : candidates) {
    if (!std::getline(answers, line))
      throw std::runtime_error(trainer + " --check --stdin answered fewer configs than it was given");
    const nlohmann::json a = nlohmann::json::parse(line);
    if (a.value("ok", false)) continue;
    const std::string key = a.value("key", "");
    std::string value;
    if (auto v = c.config.get(key)) value = " " + value_to_string(*v);
    throw InputError(located(space, c, key) + ": the embedded trainer cannot run" + value + ": " +
                     a.value("error", std::string("refused")) + " (candidate " + c.id + ", `" + trainer + " --check`)");
  }
  return std::nullopt;
}

}  // namespace partune
