#include "cli_testing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace partune::cli_testing {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A TOML basic string.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A zombie has exited; only its parent's wait is missing.
bool is_zombie(const std::string& pid) {
  std::string stat = read_all("/proc/" + pid + "/stat");
  size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z';
}

}  // namespace

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "partune-cli-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) { return read_all(path); }

int line_of(const std::string& path, const std::string& text) {
  std::istringstream in(read_file(path));
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.find(text) != std::string::npos) return n;
  }
  ADD_FAILURE() << text << " not in " << path;
  return 0;
}

Study write_space(const TempDir& dir, const SpaceOptions& o) {
  Study s;
  s.name = o.name;
  s.space = dir.file(o.name + ".toml");
  s.db = dir.file(o.name + ".db");
  s.results = dir.path() / o.name;
  std::string argv = quoted(kFakeTrainer) + ", \"--config\", \"{config_file}\"";
  for (const auto& a : o.trainer_args) argv += ", " + quoted(a);
  std::ostringstream t;
  t << "[study]\nname = " << quoted(o.name) << "\ndb = " << quoted(s.db) << "\nobjective = " << quoted(o.objective)
    << "\n\n[hardware]\n"
    << o.hardware << "\n"
    << "[backend]\nkind = \"command\"\nargv = [" << argv << "]\n"
    << "env = { PARTUNE_FAKE_MEMORY_GIB = \"" << o.fake_memory_gib << "\" }\n\n"
    << "[trial]\nsteps = " << o.steps << "\nwarmup_steps = " << o.warmup_steps << "\ntimeout_s = " << o.timeout_s
    << "\nhang_timeout_s = " << o.hang_timeout_s << "\n\n";
  if (!o.prune.empty()) t << "[prune]\n" << o.prune << "\n";
  if (!o.launcher.empty()) t << "[launcher]\n" << o.launcher << "\n";
  t << "[base.model]\nname = \"qwen3\"\nflavor = \"debugmodel_moe\"\n\n" << o.base << "\n";
  if (!o.axes.empty()) t << "[space]\n" << o.axes << "\n";
  t << "[search]\n" << o.search;
  write_file(s.space, t.str());
  return s;
}

std::string Result::describe() const {
  std::string how = signal ? "killed by signal " + std::to_string(signal) : "exit " + std::to_string(exit_code);
  return how + "\n--- stdout ---\n" + out + "--- stderr ---\n" + err;
}

Process::Process(const std::vector<std::string>& args, const std::string& cwd, const Spawn& spawn)
    : program_(spawn.program) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, spawn.stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], STDERR_FILENO);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  std::vector<std::string> argv_s = spawn.wrapper;
  argv_s.push_back(spawn.program);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&pid_, argv_s.front().c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
  if (rc != 0) throw std::runtime_error("cannot start " + argv_s.front() + ": " + std::to_string(rc));
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

bool Process::pump(double timeout_s) {
  std::vector<pollfd> fds;
  if (out_fd_ >= 0) fds.push_back({out_fd_, POLLIN, 0});
  if (err_fd_ >= 0) fds.push_back({err_fd_, POLLIN, 0});
  if (fds.empty()) return false;
  int n = poll(fds.data(), fds.size(), static_cast<int>(timeout_s * 1000));
  if (n < 0 && errno != EINTR) throw std::runtime_error("poll failed");
  for (const auto& p : fds) {
    if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char buf[8192];
    ssize_t got = read(p.fd, buf, sizeof buf);
    if (got > 0) {
      (p.fd == out_fd_ ? result_.out : result_.err).append(buf, static_cast<size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      close(p.fd);
      (p.fd == out_fd_ ? out_fd_ : err_fd_) = -1;
    }
  }
  return out_fd_ >= 0 || err_fd_ >= 0;
}

bool Process::wait_for_output(const std::function<bool(const std::string&)>& done, double timeout_s) {
  const auto t0 = Clock::now();
  while (!done(result_.out)) {
    const double left = timeout_s - seconds_since(t0);
    if (left <= 0 || !pump(std::min(left, 0.1))) return done(result_.out);
  }
  return true;
}

void Process::kill(int sig) { ::kill(pid_, sig); }

Result Process::finish(double timeout_s) {
  const auto t0 = Clock::now();
  bool killed = false;
  while (out_fd_ >= 0 || err_fd_ >= 0) {
    if (!killed && seconds_since(t0) > timeout_s) {
      ::kill(pid_, SIGKILL);
      killed = true;
      ADD_FAILURE() << program_ << " ran past " << timeout_s << " s; killed";
    }
    pump(0.1);
  }
  int status = 0;
  rusage usage{};
  wait4(pid_, &status, 0, &usage);
  reaped_ = true;
  result_.max_rss_kib = usage.ru_maxrss;
  result_.wall_s = seconds_since(started_);
  if (WIFEXITED(status)) result_.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result_.signal = WTERMSIG(status);
  return result_;
}

Result tune(const std::vector<std::string>& args, const std::string& cwd, double timeout_s) {
  return run_program({}, args, cwd, timeout_s);
}

Result run_program(const Spawn& spawn, const std::vector<std::string>& args, const std::string& cwd, double timeout_s) {
  Process p(args, cwd, spawn);
  return p.finish(timeout_s);
}

nlohmann::json json_of(const Result& r) {
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.describe();
    return nullptr;
  }
}

std::vector<pid_t> live_processes_with(const std::string& needle, double wait_s) {
  const auto t0 = Clock::now();
  while (true) {
    std::vector<pid_t> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      if (std::stoi(name) == getpid()) continue;
      const std::string seen = read_all(e.path() / "cmdline") + '\0' + read_all(e.path() / "environ");
      if (seen.find(needle) != std::string::npos && !is_zombie(name)) found.push_back(std::stoi(name));
    }
    if (found.empty() || seconds_since(t0) >= wait_s) return found;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<std::vector<std::string>> query(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  std::vector<std::vector<std::string>> rows;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << db << ": " << sqlite3_errmsg(h);
    sqlite3_close(h);
    return rows;
  }
  sqlite3_busy_timeout(h, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(h);
  } else {
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const unsigned char* v = sqlite3_column_text(st, i);
        row.emplace_back(v ? reinterpret_cast<const char*>(v) : "");
      }
      rows.push_back(std::move(row));
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return rows;
}

size_t count_lines_with(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

std::map<std::string, nlohmann::json> trials_by_id(const nlohmann::json& list) {
  std::map<std::string, nlohmann::json> out;
  if (!list.is_array()) {
    ADD_FAILURE() << "not an array: " << list.dump();
    return out;
  }
  for (const auto& t : list) out[t.at("id").get<std::string>()] = t;
  return out;
}

}  // namespace partune::cli_testing
