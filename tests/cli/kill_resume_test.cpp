// A resumed study is the study that was interrupted. tune is killed (-9) at
// many moments of a guided study with confirmation and of a [confirm] study
// (grid, then production checks); each time the same command resumes it,
// and the trials it launched in all — the killed run's and the resumed
// run's, as (trial, fidelity) pairs — are those of the uninterrupted study,
// with no full run recorded twice; likewise a grid study whose memory model
// un-prunes a candidate after its first trial. A finished study run again
// launches nothing and says so.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

// Guided (the default strategy) over one layout: probes, short trials,
// promotions to 12 steps and the confirmation of the top 3.
SpaceOptions guided_study(int step_ms = 0) {
  SpaceOptions o;
  o.objective = "mfu";
  o.steps = 12;
  o.warmup_steps = 2;
  o.search = "";
  o.axes = R"("training.local_batch_size" = [1, 2, 4]
"activation_checkpoint.mode" = ["none", "full"]
)";
  if (step_ms) o.trainer_args = {"--step-ms", std::to_string(step_ms)};
  return o;
}

// Grid over two candidates, then both re-run on a "production" command
// backend ([confirm], top_k = 2).
Study confirm_study(const TempDir& dir, int step_ms = 0, const std::string& production_program = kFakeTrainer) {
  SpaceOptions o;
  o.objective = "mfu";
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  if (step_ms) o.trainer_args = {"--step-ms", std::to_string(step_ms)};
  Study s = write_space(dir, o);
  std::string argv = "\"" + production_program + "\", \"--config\", \"{config_file}\"";
  if (step_ms) argv += ", \"--step-ms\", \"" + std::to_string(step_ms) + "\"";
  write_file(s.space, read_file(s.space) + "\n[confirm]\nkind = \"command\"\nargv = [" + argv + "]\ntop_k = 2\n");
  return s;
}

// Grid over a model that overpredicts (tests/cli/unprune_test.cpp): lbs 12
// and 48 are pruned by the prediction before anything runs, lbs 1's result
// brings lbs 12 back (un-pruned), and it runs; lbs 48 stays pruned.
Study unprune_study(const TempDir& dir) {
  SpaceOptions o;
  o.hardware = "device_type = \"cuda\"\ndevices = 1\nmemory_gib = 140\n";
  o.fake_memory_gib = 140;
  o.base = "[base.training]\nseq_len = 4096\n[base.activation_checkpoint]\nmode = \"none\"\n";
  o.axes = "\"model.flavor\" = [\"30B-A3B-L2\"]\n\"training.local_batch_size\" = [12, 48, 1, 16, 2]\n";
  return write_space(dir, o);
}

using Launch = std::pair<std::string, std::string>;  // trial id, fidelity ("production": a [confirm] check)

// What tune's plain output says it launched, in order.
std::vector<Launch> launches(const std::string& out) {
  static const std::regex note(R"(^(short|full|confirm) trial of ([0-9a-f]{16}) )");
  static const std::regex production(R"(^production check of ([0-9a-f]{16}) )");
  static const std::regex started(R"(^\[[0-9]+(/[0-9]+)?\] ([0-9a-f]{16}) .*: started$)");
  std::vector<Launch> out_launches;
  std::optional<Launch> announced;
  std::istringstream in(out);
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_search(line, m, note))
      announced = Launch{m[2], m[1]};
    else if (std::regex_search(line, m, production))
      announced = Launch{m[1], "production"};
    else if (std::regex_match(line, m, started)) {
      out_launches.push_back(announced && announced->first == m[2] ? *announced : Launch{m[2], "full"});
      announced.reset();
    }
  }
  return out_launches;
}

std::set<Launch> as_set(const std::vector<Launch>& v) { return {v.begin(), v.end()}; }

// Per trial: its status, the full runs it recorded, its production check's
// status ("" if none), what pruned it and its prune / unprune events.
std::map<std::string, std::string> recorded(const Study& s) {
  std::map<std::string, std::string> out;
  for (const auto& r : query(
           s.db, "SELECT id, status, facts_json, COALESCE(pruned_by, '') FROM trials WHERE study = '" + s.name + "'")) {
    const auto facts = nlohmann::json::parse(r[2]);
    const size_t runs = facts.contains("search") ? facts["search"].value("runs", nlohmann::json::array()).size() : 0;
    const std::string production =
        facts.contains("production") ? facts["production"].value("status", std::string("?")) : "";
    out[r[0]] =
        r[1] + " runs=" + std::to_string(runs) + " production=" + production + " pruned_by=" + r[3] + " decisions=";
  }
  // Each trial's prunes and un-prunes, in order: written once each, as the
  // uninterrupted study wrote them.
  for (const auto& r : query(s.db, "SELECT trial, kind FROM events WHERE study = '" + s.name +
                                       "' AND kind IN ('prune', 'unprune') ORDER BY id"))
    out[r[0]] += r[1] + ";";
  return out;
}

std::string describe(const std::set<Launch>& s) {
  std::string out;
  for (const auto& [id, f] : s) out += "  " + id + " " + f + "\n";
  return out;
}

struct Uninterrupted {
  std::set<Launch> launched;
  std::map<std::string, std::string> recorded;
  size_t lines = 0;
};

// Runs the study to its end once, untouched.
Uninterrupted run_uninterrupted(const std::function<Study(const TempDir&)>& make) {
  TempDir dir;
  Study s = make(dir);
  Result r = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  Uninterrupted u;
  const auto l = launches(r.out);
  u.launched = as_set(l);
  EXPECT_EQ(l.size(), u.launched.size()) << "the uninterrupted study launched a (trial, fidelity) twice:\n" << r.out;
  u.recorded = recorded(s);
  u.lines = count_lines_with(r.out, "");
  return u;
}

// Kills tune once its output has `lines` lines and `delay_us` more have
// passed, then runs the same command again to the end; compares with the
// uninterrupted study. Returns the killed run's last launch (what the kill
// interrupted, if it was still running).
std::optional<Launch> kill_and_resume(const std::function<Study(const TempDir&)>& make, const Uninterrupted& whole,
                                      size_t lines, int delay_us, const std::string& what) {
  TempDir dir;
  Study s = make(dir);
  Process first({"--space", s.space, "--plain"}, dir.path());
  first.wait_for_output([lines](const std::string& out) { return count_lines_with(out, "") >= lines; }, 120);
  std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  first.kill(SIGKILL);
  const Result killed = first.finish(60);
  const Result resumed = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  EXPECT_EQ(resumed.exit_code, 0) << what << "\n" << resumed.describe();

  auto all = launches(killed.out);
  const std::optional<Launch> interrupted = all.empty() ? std::nullopt : std::optional<Launch>(all.back());
  for (const auto& l : launches(resumed.out)) all.push_back(l);
  EXPECT_EQ(as_set(all), whole.launched) << what << ": launched\n"
                                         << describe(as_set(all)) << "uninterrupted\n"
                                         << describe(whole.launched) << "--- killed run ---\n"
                                         << killed.out << "--- resumed run ---\n"
                                         << resumed.out;
  EXPECT_EQ(recorded(s), whole.recorded) << what << "\n--- killed run ---\n"
                                         << killed.out << "--- resumed run ---\n"
                                         << resumed.out;
  EXPECT_TRUE(live_processes_with(dir.path().string(), 5).empty()) << what;
  return interrupted;
}

// 20 kill moments, chosen by deterministic seeds: a line of the
// uninterrupted study's output, then up to 3 ms more. Four at a time (each
// in a folder of its own): a study is mostly waiting for its trials'
// processes to start, and the kill moment is counted in output lines, not
// in time, so load does not move it.
void kill_at_random_moments(const std::function<Study(const TempDir&)>& make, const char* study) {
  const Uninterrupted whole = run_uninterrupted(make);
  ASSERT_GT(whole.lines, 10u);
  std::atomic<unsigned> next{1};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w)
    workers.emplace_back([&] {
      for (unsigned seed = next++; seed <= 20; seed = next++) {
        std::mt19937 rng(seed);
        const size_t line = std::uniform_int_distribution<size_t>(1, whole.lines - 1)(rng);
        const int delay_us = std::uniform_int_distribution<int>(0, 3000)(rng);
        const std::string what = std::string(study) + ", seed " + std::to_string(seed) + ": kill -9 after line " +
                                 std::to_string(line) + " + " + std::to_string(delay_us) + " us";
        kill_and_resume(make, whole, line, delay_us, what);
      }
    });
  for (auto& w : workers) w.join();
}

TEST(KillResume, GuidedStudyWithConfirmationResumesAsTheSameStudyAfterKillNineAtAnyMoment) {
  kill_at_random_moments([](const TempDir& dir) { return write_space(dir, guided_study()); }, "guided");
}

TEST(KillResume, ConfirmStudyResumesAsTheSameStudyAfterKillNineAtAnyMoment) {
  kill_at_random_moments([](const TempDir& dir) { return confirm_study(dir); }, "[confirm]");
}

// Un-prunes are decided again by the replay where the interrupted study
// decided them: the same trials run, and what stayed pruned stays pruned.
TEST(KillResume, StudyWithUnprunesResumesAsTheSameStudyAfterKillNineAtAnyMoment) {
  kill_at_random_moments(unprune_study, "unprune");
}

// The issue's cases, aimed: a kill during a guided confirmation run and
// during a production check; each run is recorded once.
TEST(KillResume, KillNineDuringAGuidedConfirmationRunsItOnce) {
  auto make = [](const TempDir& dir) { return write_space(dir, guided_study(20)); };
  const Uninterrupted whole = run_uninterrupted(make);
  TempDir dir;
  Study s = make(dir);
  Process first({"--space", s.space, "--plain"}, dir.path());
  ASSERT_TRUE(first.wait_for_output(
      [](const std::string& out) {
        const size_t at = out.find("confirm trial of ");
        return at != std::string::npos && out.find("step 2/12", at) != std::string::npos;
      },
      60))
      << first.finish(1).describe();
  first.kill(SIGKILL);
  const Result killed = first.finish(60);
  const Result resumed = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  // The interrupted confirmation runs again, first and once; nothing is
  // promoted again.
  const auto again = launches(resumed.out);
  ASSERT_FALSE(again.empty()) << resumed.out;
  EXPECT_EQ(again.front().second, "confirm") << resumed.out;
  EXPECT_EQ(count_lines_with(resumed.out, "promote"), 0u) << resumed.out;
  EXPECT_EQ(recorded(s), whole.recorded) << killed.out << "--- resumed ---\n" << resumed.out;
  for (const auto& [id, r] : recorded(s)) EXPECT_EQ(r.find("runs=3"), std::string::npos) << id << " " << r;
}

TEST(KillResume, KillNineDuringAProductionCheckRunsItOnceOnProductionAndNeverOnTheStudyBackend) {
  auto make = [](const TempDir& dir) { return confirm_study(dir, 20); };
  const Uninterrupted whole = run_uninterrupted(make);
  TempDir dir;
  Study s = make(dir);
  Process first({"--space", s.space, "--plain"}, dir.path());
  ASSERT_TRUE(first.wait_for_output(
      [](const std::string& out) {
        const size_t at = out.find("production check of ");
        return at != std::string::npos && out.find("step 2/6", at) != std::string::npos;
      },
      60))
      << first.finish(1).describe();
  first.kill(SIGKILL);
  const Result killed = first.finish(60);
  const Result resumed = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  // Only production checks: no trial runs again on the study's backend.
  for (const auto& l : launches(resumed.out)) EXPECT_EQ(l.second, "production") << resumed.out;
  EXPECT_EQ(count_lines_with(resumed.out, "production check of "), 2u) << resumed.out;
  EXPECT_EQ(recorded(s), whole.recorded) << killed.out << "--- resumed ---\n" << resumed.out;
}

TEST(KillResume, AFinishedStudyRunAgainLaunchesNothingAddsNothingAndSaysSo) {
  TempDir dir;
  Study s = write_space(dir, guided_study());
  Result first = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  const auto trials_before = recorded(s);
  const auto events_before = query(s.db, "SELECT COUNT(*) FROM events");
  for (int run = 0; run < 2; ++run) {
    Result again = tune({"--space", s.space, "--plain"}, dir.path(), 120);
    ASSERT_EQ(again.exit_code, 0) << again.describe();
    EXPECT_EQ(count_lines_with(again.out, ": started"), 0u) << again.out;
    EXPECT_EQ(count_lines_with(again.out, "promote"), 0u) << again.out;
    EXPECT_NE(again.out.find("nothing to run: the study was finished by an earlier run"), std::string::npos)
        << again.out;
    EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM events"), events_before);
    EXPECT_EQ(recorded(s), trials_before);
  }
}

}  // namespace
}  // namespace partune::cli_testing
