// Several trials at once on one machine ([launcher] parallel_trials, issue
// 13): real tune, real fake_trainer processes. Four slots finish a study in
// about a quarter of the serial time with the same result for every trial;
// cuda slots get disjoint CUDA_VISIBLE_DEVICES sets.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <set>

#include "cli_testing.h"
#include "tuner/study/runner.h"

namespace partune::cli_testing {
namespace {

// 8 candidates of 6 steps of 250 ms: ~1.6 s a trial.
SpaceOptions eight_slow_trials(const std::string& name) {
  SpaceOptions o;
  o.name = name;
  o.trainer_args = {"--step-ms", "250", "--print-env", "CUDA_VISIBLE_DEVICES"};
  o.axes = R"("training.local_batch_size" = [1, 2, 4, 8]
"activation_checkpoint.mode" = ["none", "full"]
)";
  return o;
}

double timed_run(const Study& s, const TempDir& dir, Result& r) {
  const auto t0 = std::chrono::steady_clock::now();
  r = tune({"--space", s.space}, dir.path(), 120);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(ParallelTrials, FourLocalSlotsTakeAQuarterOfTheSerialTimeWithTheSameResults) {
  TempDir dir;
  const Study serial = write_space(dir, eight_slow_trials("serial"));
  SpaceOptions o = eight_slow_trials("parallel");
  o.launcher = "parallel_trials = 4\n";
  const Study parallel = write_space(dir, o);

  Result rs, rp;
  const double serial_s = timed_run(serial, dir, rs);
  ASSERT_EQ(rs.exit_code, 0) << rs.describe();
  const double parallel_s = timed_run(parallel, dir, rp);
  ASSERT_EQ(rp.exit_code, 0) << rp.describe();
  std::cout << "serial " << serial_s << " s, 4 slots " << parallel_s << " s\n";
  EXPECT_LT(parallel_s, 0.4 * serial_s) << rp.out;
  EXPECT_GT(parallel_s, 0.2 * serial_s) << rp.out;
  // Each CPU slot has its own set (overlapping only when the machine has
  // fewer CPUs than slots, which tune says).
  EXPECT_EQ(count_lines_with(rp.out, "slot "), 4u) << rp.out;

  // Every candidate once, and the same numbers as the serial study.
  const auto a = trials_by_id(json_of(tune({"list", "--space", serial.space, "--format", "json"}, dir.path())));
  const auto b = trials_by_id(json_of(tune({"list", "--space", parallel.space, "--format", "json"}, dir.path())));
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (const auto& [id, t] : a) {
    ASSERT_TRUE(b.count(id)) << id;
    EXPECT_EQ(b.at(id)["status"], "done") << id;
    EXPECT_EQ(b.at(id)["attempt"], 1) << id;
    EXPECT_EQ(b.at(id)["metrics"], t["metrics"]) << id;
  }
  EXPECT_EQ(query(parallel.db, "SELECT COUNT(*) FROM steps")[0][0], "48");
}

TEST(ParallelTrials, KillNineWithFourRunningEndsThemAllAndResumeFinishes) {
  TempDir dir;
  SpaceOptions o = eight_slow_trials("killed");
  o.launcher = "parallel_trials = 4\n";
  const Study s = write_space(dir, o);
  const std::string token = study_token(s.db, s.name);
  Process first({"--space", s.space}, dir.path());
  ASSERT_TRUE(first.wait_for_output([](const std::string& out) { return out.find("[4/8]") != std::string::npos; }, 15))
      << first.finish(1).describe();
  // "[4/8]" is printed as the fourth starts; its row says running a moment later.
  std::string running;
  for (int i = 0; i < 50 && running != "4"; ++i) {
    running = query(s.db, "SELECT COUNT(*) FROM trials WHERE status = 'running'")[0][0];
    if (running != "4") ::usleep(20000);
  }
  ASSERT_EQ(running, "4");
  first.kill(SIGKILL);
  EXPECT_EQ(first.finish(5).signal, SIGKILL);
  EXPECT_TRUE(live_processes_with(token, 5).empty()) << "trial processes outlived tune";
  const Result again = tune({"--space", s.space}, dir.path(), 60);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM trials WHERE status = 'done'")[0][0], "8");
  // The four killed trials ran again (attempt 2), the others once.
  EXPECT_EQ(query(s.db, "SELECT COUNT(*) FROM trials WHERE attempt = 2")[0][0], "4");
}

TEST(ParallelTrials, CudaSlotsGetDisjointDeviceSets) {
  ::unsetenv("CUDA_VISIBLE_DEVICES");             // the slots then number the machine's devices 0..7
  ::setenv("PARTUNE_CUDA_DEVICE_COUNT", "8", 1);  // the driver's answer (test hook)
  TempDir dir;
  SpaceOptions o = eight_slow_trials("cuda");
  o.trainer_args = {"--step-ms", "100", "--print-env", "CUDA_VISIBLE_DEVICES"};
  o.hardware = "device_type = \"cuda\"\ndevices = 2\nmemory_gib = 80\n";
  o.launcher = "parallel_trials = 4\n";
  const Study s = write_space(dir, o);
  const Result r = tune({"--space", s.space}, dir.path(), 60);
  ::unsetenv("PARTUNE_CUDA_DEVICE_COUNT");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::set<std::string> sets;
  for (const auto& row : query(s.db, "SELECT id FROM trials")) {
    const std::string log = read_file((s.trial_dir(row[0]) / "output.log").string());
    const size_t at = log.find("env CUDA_VISIBLE_DEVICES=");
    ASSERT_NE(at, std::string::npos) << log;
    sets.insert(log.substr(at + 25, log.find('\n', at) - at - 25));
  }
  EXPECT_EQ(sets, (std::set<std::string>{"0,1", "2,3", "4,5", "6,7"}));
}

TEST(ParallelTrials, MoreDevicesThanVisibleIsAnInputError) {
  ::setenv("CUDA_VISIBLE_DEVICES", "0,1,2", 1);
  TempDir dir;
  SpaceOptions o = eight_slow_trials("few");
  o.hardware = "device_type = \"cuda\"\ndevices = 2\nmemory_gib = 80\n";
  o.launcher = "parallel_trials = 2\n";
  const Study s = write_space(dir, o);
  const Result r = tune({"--space", s.space}, dir.path());
  ::unsetenv("CUDA_VISIBLE_DEVICES");
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("launcher.parallel_trials"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CUDA_VISIBLE_DEVICES=0,1,2 has 3"), std::string::npos) << r.err;
}

// CUDA_VISIBLE_DEVICES unset: the machine's devices are counted (devices =
// 8 and 2 trials gave slots 0..7 and 8..15 on any machine); too few, or no
// driver to count them, is refused as too few visible are. An empty
// CUDA_VISIBLE_DEVICES is no device, not unset.
TEST(ParallelTrials, TooFewCudaDevicesOnTheMachineIsAnInputError) {
  struct Case {
    const char* visible;       // nullptr: unset
    const char* driver_count;  // PARTUNE_CUDA_DEVICE_COUNT; nullptr: the real driver (none here, or any)
    const char* message;
  };
  for (const Case& c : {Case{nullptr, "8", "2 trials of 8 devices need 16 devices; this machine has 8"},
                        Case{nullptr, "none",
                             "CUDA_VISIBLE_DEVICES is unset and this machine's CUDA devices "
                             "cannot be counted"},
                        Case{"", "16", "CUDA_VISIBLE_DEVICES is set and empty: no device is visible"}}) {
    if (c.visible)
      ::setenv("CUDA_VISIBLE_DEVICES", c.visible, 1);
    else
      ::unsetenv("CUDA_VISIBLE_DEVICES");
    ::setenv("PARTUNE_CUDA_DEVICE_COUNT", c.driver_count, 1);
    TempDir dir;
    SpaceOptions o = eight_slow_trials("count");
    o.hardware = "device_type = \"cuda\"\ndevices = 8\nmemory_gib = 80\n";
    o.launcher = "parallel_trials = 2\n";
    const Study s = write_space(dir, o);
    const Result r = tune({"--space", s.space}, dir.path());
    ::unsetenv("CUDA_VISIBLE_DEVICES");
    ::unsetenv("PARTUNE_CUDA_DEVICE_COUNT");
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find("launcher.parallel_trials"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    if (fs::exists(s.db)) {
      EXPECT_EQ(query(s.db, "SELECT count(*) FROM trials WHERE attempt > 0")[0][0], "0") << "a trial was launched";
    }
  }
}

TEST(ParallelTrials, SlurmOutsideAnAllocationIsAnInputError) {
  ::unsetenv("SLURM_JOB_ID");
  TempDir dir;
  SpaceOptions o = eight_slow_trials("noalloc");
  o.launcher = "kind = \"slurm\"\n";
  const Study s = write_space(dir, o);
  const Result r = tune({"--space", s.space}, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_NE(r.err.find("inside a Slurm allocation"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace partune::cli_testing
