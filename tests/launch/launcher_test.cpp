// The Launcher against fake_trainer: streaming, exit codes, timeout and hang
// kills, process-group cleanup, death with the tuner, leftovers, no shell.
#include "tuner/launch/launcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process_gone.h"
#include "tuner/parse/log_parser.h"

extern char** environ;

namespace partune {
namespace {

using partune::testing::process_gone;

namespace fs = std::filesystem;

const std::string kTrainer = PARTUNE_FAKE_TRAINER;
const std::string kConfig = std::string(PARTUNE_FIXTURES_DIR) + "/configs/small.toml";

ProcessSpec trainer(std::vector<std::string> extra = {}) {
  ProcessSpec p;
  p.argv = {kTrainer, "--config", kConfig};
  p.argv.insert(p.argv.end(), extra.begin(), extra.end());
  return p;
}

struct Captured {
  std::vector<std::pair<size_t, std::string>> lines;
  std::function<void(size_t, std::string_view)> sink() {
    return [this](size_t proc, std::string_view line) { lines.emplace_back(proc, std::string(line)); };
  }
  bool has(const std::string& text) const {
    for (const auto& [p, l] : lines)
      if (l == text) return true;
    return false;
  }
};

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("partune-launch-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

pid_t pgid_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  std::getline(stat, content);
  std::istringstream rest(content.substr(content.rfind(')') + 2));
  char state;
  long ppid, pgrp;
  rest >> state >> ppid >> pgrp;
  return static_cast<pid_t>(pgrp);
}

// Every test leaves this process without children: each launched process
// was reaped (no zombie), nothing else was started.
class Launcher : public ::testing::Test {
 protected:
  void TearDown() override {
    errno = 0;
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  }
};

TEST_F(Launcher, StreamsLinesToCallbackAndLogFile) {
  fs::path dir = temp_dir();
  LaunchOptions opts;
  opts.log_path = (dir / "output.log").string();
  Captured cap;
  TrialLogState state;
  int started_pgid = 0;
  auto r = launch(
      {trainer()}, opts,
      [&](size_t proc, std::string_view line) {
        cap.lines.emplace_back(proc, std::string(line));
        state.feed(line);
      },
      [&](int pgid) { started_pgid = pgid; });
  ASSERT_EQ(r.exit_codes, std::vector<int>{0});
  EXPECT_EQ(r.signals, std::vector<int>{0});
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.hung);
  EXPECT_GT(r.pgid, 0);
  EXPECT_EQ(started_pgid, r.pgid);
  EXPECT_EQ(state.steps().size(), 5u);
  EXPECT_EQ(state.init().seq_len, 1024);

  std::ifstream log(opts.log_path);
  std::vector<std::string> logged;
  for (std::string l; std::getline(log, l);) logged.push_back(l);
  ASSERT_EQ(logged.size(), cap.lines.size());
  for (size_t i = 0; i < logged.size(); ++i) EXPECT_EQ(logged[i], cap.lines[i].second);
  fs::remove_all(dir);
}

// What a callback does about a line (tune prints progress, a test reads the
// log) may be seen at once: the line is in the log by then, though the log
// is flushed once a batch of lines, not once a line.
TEST_F(Launcher, TheLogHoldsALineBeforeTheCallbackSeesIt) {
  const fs::path dir = temp_dir();
  LaunchOptions opts;
  opts.log_path = (dir / "output.log").string();
  size_t checked = 0;
  launch({trainer()}, opts, [&](size_t, std::string_view line) {
    std::ifstream log(opts.log_path);
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find(std::string(line) + "\n"), std::string::npos) << line;
    ++checked;
  });
  EXPECT_GT(checked, 5u);
  fs::remove_all(dir);
}

TEST_F(Launcher, NothingToRun) {
  auto r = launch({}, {}, {});
  EXPECT_TRUE(r.exit_codes.empty());
  EXPECT_EQ(r.pgid, 0);
}

TEST_F(Launcher, PartialLastLineIsFlushedAtExit) {
  Captured cap;
  auto r = launch({trainer({"--tail", "no newline at the end"})}, {}, cap.sink());
  EXPECT_EQ(r.exit_codes[0], 0);
  ASSERT_FALSE(cap.lines.empty());
  EXPECT_EQ(cap.lines.back().second, "no newline at the end");
}

TEST_F(Launcher, ArgvIsNeverGivenToAShell) {
  const std::vector<std::string> args = {"; rm -rf \"$HOME\"/nothing", "$HOME", "a b  c", "'quoted'", "*", "`id`", ""};
  ProcessSpec p;
  p.argv = {kTrainer, "--echo-args"};
  p.argv.insert(p.argv.end(), args.begin(), args.end());
  Captured cap;
  auto r = launch({p}, {}, cap.sink());
  EXPECT_EQ(r.exit_codes[0], 0);
  for (size_t i = 0; i < args.size(); ++i)
    EXPECT_TRUE(cap.has("arg[" + std::to_string(i + 2) + "]=" + args[i])) << args[i];
  EXPECT_EQ(cap.lines.size(), args.size() + 2);
}

TEST_F(Launcher, EnvironmentIsInheritedPlusSpecAndCwdIsSet) {
  ProcessSpec p;
  p.argv = {kTrainer, "--config",         "small.toml", "--print-env", "PARTUNE_TEST_VALUE", "--print-env",
            "PATH",   "--training.steps", "1"};
  p.env["PARTUNE_TEST_VALUE"] = "x y $z";
  p.cwd = std::string(PARTUNE_FIXTURES_DIR) + "/configs";
  Captured cap;
  auto r = launch({p}, {}, cap.sink());
  EXPECT_EQ(r.exit_codes[0], 0);
  EXPECT_TRUE(cap.has("env PARTUNE_TEST_VALUE=x y $z"));
  EXPECT_TRUE(cap.has(std::string("env PATH=") + std::getenv("PATH")));
}

TEST_F(Launcher, ProgramIsLookedUpOnPath) {
  ProcessSpec p;
  p.argv = {"fake_trainer", "--echo-args", "x"};
  p.env["PATH"] = fs::path(kTrainer).parent_path().string() + ":/usr/bin:/bin";
  Captured cap;
  auto r = launch({p}, {}, cap.sink());
  EXPECT_EQ(r.exit_codes[0], 0);
  EXPECT_TRUE(cap.has("arg[1]=--echo-args"));
}

TEST_F(Launcher, ExitCodesPerProcessAndOneGroup) {
  Captured cap;
  auto r = launch({trainer(), trainer({"--crash-after", "2"})}, {}, cap.sink());
  EXPECT_EQ(r.exit_codes, (std::vector<int>{0, 1}));
  EXPECT_EQ(r.signals, (std::vector<int>{0, 0}));
  EXPECT_EQ(trial_exit(r), std::make_pair(1, 0));
  // One rank killed, its peer exiting 1: both facts stand for the trial.
  LaunchResult mixed;
  mixed.exit_codes = {1, 128 + 9};
  mixed.signals = {0, 9};
  EXPECT_EQ(trial_exit(mixed), std::make_pair(1, 9));
  bool saw_crash = false;
  for (const auto& [proc, line] : cap.lines)
    if (line.find("fake trainer crashed") != std::string::npos) saw_crash = proc == 1;
  EXPECT_TRUE(saw_crash);
}

TEST_F(Launcher, MissingProgramIsExit127AndEndsTheOthers) {
  Captured cap;
  ProcessSpec missing;
  missing.argv = {"/nonexistent/partune-no-such-program"};
  auto t0 = std::chrono::steady_clock::now();
  auto r = launch({trainer({"--hang-after", "1"}), missing}, {}, cap.sink());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0);
  EXPECT_EQ(r.exit_codes[1], 127);
  EXPECT_EQ(r.signals[0], SIGKILL);
  // Why, as execve would say it: in the output and in the result.
  const std::string why = "cannot execute /nonexistent/partune-no-such-program: No such file or directory";
  EXPECT_TRUE(cap.has("partune: " + why));
  EXPECT_EQ(r.start_error, why);

  Captured cap2;
  ProcessSpec not_on_path;
  not_on_path.argv = {"partune-no-such-program-on-path"};
  auto r2 = launch({not_on_path}, {}, cap2.sink());
  EXPECT_EQ(r2.exit_codes[0], 127);
  EXPECT_EQ(
      r2.start_error.rfind("cannot execute partune-no-such-program-on-path: No such file or directory on PATH (", 0),
      0u)
      << r2.start_error;

  // A file that is there but not executable, and a folder.
  const fs::path dir = temp_dir();
  const std::string plain = (dir / "not-executable").string();
  std::ofstream(plain) << "#!/bin/sh\n";
  ProcessSpec no_x;
  no_x.argv = {plain};
  Captured cap3;
  EXPECT_EQ(launch({no_x}, {}, cap3.sink()).start_error, "cannot execute " + plain + ": Permission denied");
  ProcessSpec folder;
  folder.argv = {dir.string()};
  EXPECT_EQ(launch({folder}, {}, cap3.sink()).start_error, "cannot execute " + dir.string() + ": Is a directory");
  fs::remove_all(dir);
}

TEST_F(Launcher, TimeoutKillsTheGroup) {
  LaunchOptions opts;
  opts.timeout_s = 0.5;
  opts.kill_grace_s = 2;
  Captured cap;
  auto r = launch({trainer({"--hang-after", "1"})}, opts, cap.sink());
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.hung);
  EXPECT_EQ(r.signals[0], SIGTERM);
  EXPECT_EQ(r.exit_codes[0], 128 + SIGTERM);
  EXPECT_GE(r.wall_s, 0.5);
  EXPECT_LT(r.wall_s, 2.0);
  TrialLogState st;
  for (const auto& [p, l] : cap.lines) st.feed(l);
  auto [code, sig] = trial_exit(r);
  EXPECT_EQ(classify_exit(code, sig, r.timed_out, r.hung, st), FailureClass::Timeout);
}

// A child writing short lines faster than they are handled (each one to
// the log, as a trial's are) still ends at the time limit, which was only
// checked when the pipe was empty: 1 GB of newlines ran on past it. Also
// 10^6 lines a second, paced. A watchdog ends the child when the limit
// does not, so a regression fails here instead of waiting for 1 GB.
TEST_F(Launcher, TimeLimitHoldsWhileAChildFloodsShortLines) {
  for (const auto& flood :
       std::vector<std::vector<std::string>>{{"--newline-flood", "1000000000"}, {"--paced-lines", "1000000"}}) {
    const fs::path dir = temp_dir();
    LaunchOptions opts;
    opts.timeout_s = 1;
    opts.hang_timeout_s = 30;
    opts.kill_grace_s = 2;
    opts.log_path = (dir / "output.log").string();
    std::atomic<int> group{0};
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
      const auto t0 = std::chrono::steady_clock::now();
      while (!done && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(8))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!done && group > 0) ::killpg(group, SIGKILL);
    });
    size_t lines = 0;
    const auto r = launch(
        {trainer(flood)}, opts, [&](size_t, std::string_view) { ++lines; }, [&](int pgid) { group = pgid; });
    done = true;
    watchdog.join();
    EXPECT_TRUE(r.timed_out) << flood[0];
    EXPECT_EQ(r.signals[0], SIGTERM) << flood[0];
    EXPECT_LT(r.wall_s, opts.timeout_s + 2) << flood[0];
    EXPECT_GT(lines, 10000u) << flood[0];  // it did flood
    EXPECT_LE(fs::file_size(opts.log_path), (uintmax_t{64} << 20) + 200) << flood[0];
    fs::remove_all(dir);
  }
}

// The log cap is per attempt: an attempt after one that filled the log to
// its cap still leaves its lines (and its own truncation note).
TEST_F(Launcher, LogCapIsPerAttempt) {
  const fs::path dir = temp_dir();
  LaunchOptions opts;
  opts.log_path = (dir / "output.log").string();
  opts.log_limit_bytes = 4096;
  Captured cap;
  launch({trainer({"--flood", "1000"})}, opts, cap.sink());
  const auto first = fs::file_size(opts.log_path);
  EXPECT_LE(first, 4096u + 200);
  launch({trainer()}, opts, cap.sink());
  std::ifstream log(opts.log_path);
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_GT(text.size(), first);
  EXPECT_NE(text.find("step:  5", first), std::string::npos) << "the second attempt's last step is in the log";
  fs::remove_all(dir);
}

TEST_F(Launcher, HangIsNoOutputForHangTimeout) {
  LaunchOptions opts;
  opts.timeout_s = 30;
  opts.hang_timeout_s = 0.4;
  opts.kill_grace_s = 2;
  Captured cap;
  // Steps every 100 ms keep it alive for 5 steps, then it goes silent.
  auto r = launch({trainer({"--step-ms", "100", "--hang-after", "5"})}, opts, cap.sink());
  EXPECT_TRUE(r.hung);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.signals[0], SIGTERM);
  EXPECT_GE(r.wall_s, 0.5 + 0.4);  // output kept it alive past the hang timeout
  EXPECT_LT(r.wall_s, 3.0);
}

// Early stopping: the line callback sees the steps and asks for a stop; the
// launcher ends the whole group long before the trial would have ended.
TEST_F(Launcher, StopRequestedFromTheLineCallbackEndsTheTrial) {
  LaunchOptions opts;
  opts.timeout_s = 30;
  opts.kill_grace_s = 2;
  bool stop = false;
  opts.stop_requested = [&] { return stop; };
  int steps = 0;
  // 1000 steps of 50 ms: 50 s unless stopped.
  auto r = launch({trainer({"--step-ms", "50", "--training.steps", "1000"})}, opts, [&](size_t, std::string_view line) {
    if (parse_log_line(line).kind == ParsedLine::Kind::Step && ++steps == 3) stop = true;
  });
  EXPECT_TRUE(r.stopped);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.hung);
  EXPECT_EQ(r.signals[0], SIGTERM);
  EXPECT_GE(steps, 3);
  EXPECT_LT(steps, 20);
  EXPECT_LT(r.wall_s, 5.0);
  EXPECT_TRUE(process_gone(r.pgid));
}

TEST_F(Launcher, NoStopWhenNotRequested) {
  LaunchOptions opts;
  opts.timeout_s = 30;
  int polls = 0;
  opts.stop_requested = [&] { return ++polls < 0; };
  Captured cap;
  auto r = launch({trainer({"--step-ms", "30", "--training.steps", "4"})}, opts, cap.sink());
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.exit_codes[0], 0);
  EXPECT_GT(polls, 0);
}

TEST_F(Launcher, ProcessIgnoringSigtermIsSigkilledAfterGrace) {
  LaunchOptions opts;
  opts.hang_timeout_s = 0.3;
  opts.kill_grace_s = 0.3;
  Captured cap;
  auto r = launch({trainer({"--ignore-sigterm", "--hang-after", "1"})}, opts, cap.sink());
  EXPECT_TRUE(r.hung);
  EXPECT_EQ(r.signals[0], SIGKILL);
  EXPECT_GE(r.wall_s, 0.6);
  EXPECT_LT(r.wall_s, 3.0);
}

pid_t grandchild_pid(const Captured& cap) {
  for (const auto& [p, l] : cap.lines)
    if (l.rfind("fake_trainer: child pid ", 0) == 0) return std::stoi(l.substr(24));
  return 0;
}

TEST_F(Launcher, GrandchildDoesNotSurviveAKill) {
  LaunchOptions opts;
  opts.hang_timeout_s = 0.3;
  opts.kill_grace_s = 0.3;
  Captured cap;
  pid_t grandchild_group = 0;
  int group = 0;
  auto r = launch(
      {trainer({"--spawn-child", "--hang-after", "1"})}, opts,
      [&](size_t proc, std::string_view line) {
        cap.lines.emplace_back(proc, std::string(line));
        if (line.rfind("fake_trainer: child pid ", 0) == 0)
          grandchild_group = pgid_of(std::stoi(std::string(line.substr(24))));
      },
      [&](int pgid) { group = pgid; });
  EXPECT_TRUE(r.hung);
  pid_t gc = grandchild_pid(cap);
  ASSERT_GT(gc, 0);
  EXPECT_EQ(grandchild_group, group);
  EXPECT_TRUE(process_gone(gc));
}

TEST_F(Launcher, GrandchildDoesNotSurviveANormalExit) {
  // The grandchild holds the output pipe open: the launcher must not wait on it.
  Captured cap;
  auto r = launch({trainer({"--spawn-child"})}, {}, cap.sink());
  EXPECT_EQ(r.exit_codes[0], 0);
  EXPECT_LT(r.wall_s, 3.0);
  pid_t gc = grandchild_pid(cap);
  ASSERT_GT(gc, 0);
  EXPECT_TRUE(process_gone(gc));
  EXPECT_TRUE(cap.has("[titan] " + cap.lines.back().second.substr(8)));  // last line arrived whole
}

TEST_F(Launcher, ThrowingCallbackKillsAndReapsEverything) {
  int group = 0;
  EXPECT_THROW(launch(
                   {trainer({"--hang-after", "1"}), trainer({"--hang-after", "1"})}, {},
                   [](size_t, std::string_view line) {
                     if (line.find("step:") != std::string_view::npos) throw std::runtime_error("store failed");
                   },
                   [&](int pgid) { group = pgid; }),
               std::runtime_error);
  ASSERT_GT(group, 0);
  EXPECT_EQ(::killpg(group, 0), -1);  // no process of the group is left, not even a zombie
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(Launcher, UnopenableLogThrowsBeforeStarting) {
  LaunchOptions opts;
  opts.log_path = "/nonexistent-dir/partune/output.log";
  bool started = false;
  EXPECT_THROW(launch({trainer()}, opts, {}, [&](int) { started = true; }), std::system_error);
  EXPECT_FALSE(started);
}

TEST_F(Launcher, ChildrenDieWithTheTuner) {
  // A stand-in tuner (a forked copy of this test) launches a hanging trainer
  // and is then killed with SIGKILL: the trainer must die too.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t tuner = ::fork();
  ASSERT_GE(tuner, 0);
  if (tuner == 0) {
    ::close(fds[0]);
    launch({trainer({"--hang-after", "1"})}, {}, {}, [&](int pgid) {
      ssize_t n = ::write(fds[1], &pgid, sizeof pgid);
      (void)n;
    });
    ::_exit(0);
  }
  ::close(fds[1]);
  int trainer_pid = 0;
  ASSERT_EQ(::read(fds[0], &trainer_pid, sizeof trainer_pid), static_cast<ssize_t>(sizeof trainer_pid));
  ::close(fds[0]);
  ASSERT_GT(trainer_pid, 0);
  EXPECT_FALSE(process_gone(trainer_pid, 0.1));
  ::kill(tuner, SIGKILL);
  ::waitpid(tuner, nullptr, 0);
  EXPECT_TRUE(process_gone(trainer_pid));
}

pid_t spawn_with_env(const std::vector<std::string>& extra_env) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = {kTrainer, "--config", kConfig, "--hang-after", "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // its own group, as a trial has
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, kTrainer.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc == 0 ? pid : 0;
}

TEST(KillLeftovers, KillsOnlyProcessesWithTheToken) {
  std::string token = "tok-" + std::to_string(::getpid());
  pid_t mine = spawn_with_env({"PARTUNE_TEST_TOKEN=" + token});
  pid_t other = spawn_with_env({"PARTUNE_TEST_TOKEN=" + token + "-other"});
  ASSERT_GT(mine, 0);
  ASSERT_GT(other, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(kill_leftovers("PARTUNE_TEST_TOKEN", token), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(mine, &status, 0), mine);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(::waitpid(other, &status, WNOHANG), 0);  // still running
  EXPECT_EQ(kill_leftovers("PARTUNE_TEST_TOKEN", token), 0);
  ::kill(other, SIGKILL);
  ::waitpid(other, &status, 0);
}

}  // namespace
}  // namespace partune
