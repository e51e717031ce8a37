// Helpers for end-to-end tests of the `tune` program as a user runs it: a
// temporary study folder with its own space file and database, tune run as a
// real child process (argv only, no shell) with its stdout, stderr and exit
// status captured, and looks at /proc and the database from outside.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace partune::cli_testing {

namespace fs = std::filesystem;

inline const std::string kTune = TUNE_BIN;
inline const std::string kFakeTrainer = FAKE_TRAINER_BIN;
inline const std::string kFixtures = PARTUNE_FIXTURES_DIR;
// The embedded trainer, for the tests that run it (test_cli is built with
// it unless -DPARTUNE_TRAINER=OFF; CI builds it). REQUIRE_TRAINER() skips a
// test in a build without it.
#ifdef PARTUNE_TRAINER_BIN
inline const std::string kTrainer = PARTUNE_TRAINER_BIN;
#define REQUIRE_TRAINER()
#else
inline const std::string kTrainer;
#define REQUIRE_TRAINER() GTEST_SKIP() << "built without the trainer (-DPARTUNE_TRAINER=OFF)"
#endif

// A folder of its own per test, removed at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& text);
std::string read_file(const std::string& path);
// 1-based number of the first line of `path` that contains `text` (0 and a
// test failure when none does).
int line_of(const std::string& path, const std::string& text);

// A study on the command backend running fake_trainer. Everything it writes
// (database, trial folders) lands in `dir`.
struct SpaceOptions {
  std::string name = "study";
  std::string objective = "tps";
  std::vector<std::string> trainer_args;  // extra fake_trainer flags
  double fake_memory_gib = 80;            // fake_trainer's device memory
  int steps = 6;
  int warmup_steps = 2;
  double timeout_s = 20;
  double hang_timeout_s = 10;
  std::string prune;  // lines of [prune], if any
  std::string base;   // extra [base.<section>] tables
  std::string axes = R"("training.local_batch_size" = [1, 2]
"activation_checkpoint.mode" = ["none", "full"]
)";
  std::string search = "strategy = \"grid\"\n";
  std::string hardware = "device_type = \"cpu\"\ndevices = 1\n";  // the [hardware] lines
  std::string launcher;                                           // lines of [launcher], if any
};

struct Study {
  std::string space;  // the space file
  std::string db;
  std::string name;
  fs::path results;  // <dir>/<name>: the trial folders
  fs::path trial_dir(const std::string& id) const { return results / ("trial-" + id); }
};

// Writes <dir>/<name>.toml; the db is <dir>/<name>.db.
Study write_space(const TempDir& dir, const SpaceOptions& o);

struct Result {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string out, err;
  long max_rss_kib = 0;          // the program's own peak resident memory (wait4), not its children's
  double wall_s = 0;             // from start to reaped
  std::string describe() const;  // for failure messages
};

// What a Process runs: `wrapper... program args...`, stdin from a file.
struct Spawn {
  std::string program = kTune;
  std::vector<std::string> wrapper;  // e.g. setpriv's argv to drop privileges; empty: none
  std::string stdin_path = "/dev/null";
};

// A running tune (or another program). Output is read as it comes; nothing
// goes through a shell.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::string& cwd, const Spawn& spawn = {});
  ~Process();  // SIGKILLs and reaps it if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reads output until `done(stdout so far)` holds; false after timeout_s or
  // when the process ends first.
  bool wait_for_output(const std::function<bool(const std::string&)>& done, double timeout_s);
  // Reads to end of output and reaps; SIGKILLs it after timeout_s.
  Result finish(double timeout_s);
  void kill(int sig);

 private:
  bool pump(double timeout_s);  // one poll round; false at end of output
  std::string program_;
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  Result result_;
  bool reaped_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// Runs `tune args...` in `cwd` to its end (killed after timeout_s).
Result tune(const std::vector<std::string>& args, const std::string& cwd, double timeout_s = 20);
// Runs what `spawn` names with `args` in `cwd` to its end (killed after timeout_s).
Result run_program(const Spawn& spawn, const std::vector<std::string>& args, const std::string& cwd,
                   double timeout_s = 60);

// Parses JSON a command printed, or fails the test with the output.
nlohmann::json json_of(const Result& r);

// Pids (other than this process) whose command line or environment mentions
// `needle`, e.g. a test's folder or a study token; waits up to wait_s for
// them to be gone (zombies count as gone).
std::vector<pid_t> live_processes_with(const std::string& needle, double wait_s = 0);

// Rows of an SQL query on the database, every column as text ("" for NULL).
std::vector<std::vector<std::string>> query(const std::string& db, const std::string& sql);

// Lines of `text` that contain `needle`.
size_t count_lines_with(const std::string& text, const std::string& needle);

// The trials of `tune list --format json`, by id.
std::map<std::string, nlohmann::json> trials_by_id(const nlohmann::json& list);

}  // namespace partune::cli_testing
