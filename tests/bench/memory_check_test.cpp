// memory_check's table on a real study: tune runs fake_trainer (command
// backend) over a grid where one config runs out of memory; the table must
// show every trial in plan order, calibrate on the first three measured
// ones, and flag the out-of-memory config as predicted not to fit.
#include <gtest/gtest.h>

#include <cmath>

#include "bench/memory_check_report.h"
#include "cli_testing.h"
#include "common/error.h"

namespace partune::cli_testing {
namespace {

// fake_trainer's memory: 8 GiB + lbs * seq_len * {1e-3 none, 0.15e-3 full}
// GiB, with a 12 GiB device: (none, 2048, 2) needs 12.1 GiB and dies.
Study run_study(const TempDir& dir) {
  SpaceOptions o;
  o.fake_memory_gib = 12;
  o.prune = "before_launch = false\n";  // every config runs: the check compares each with its prediction
  o.steps = 4;
  o.warmup_steps = 1;
  o.base = "[base.metrics]\nlog_freq = 1\n";
  o.axes = R"("activation_checkpoint.mode" = ["none", "full"]
"training.seq_len" = [1024, 2048]
"training.local_batch_size" = [1, 2]
)";
  Study s = write_space(dir, o);
  const Result run = tune({"--space", s.space}, dir.path().string(), 60);
  EXPECT_EQ(run.exit_code, 0) << run.describe();
  return s;
}

TEST(MemoryCheck, ReadsAStudyCalibratesOnItsFirstTrialsAndFlagsTheOutOfMemoryConfig) {
  TempDir dir;
  const Study s = run_study(dir);
  const Space space = load_space(s.space);
  Store store = Store::open(s.db, Store::Mode::Existing);
  const MemoryCheck c = check_memory(space, store);

  ASSERT_EQ(c.rows.size(), 8u);
  EXPECT_EQ(c.rows[0].config, "ac=none lbs=1 seq=1024");
  ASSERT_TRUE(c.capacity_gib);
  EXPECT_NEAR(*c.capacity_gib, 12.0, 0.05);  // learned from memory_gib / memory_pct
  EXPECT_EQ(c.calibration_trials, 3);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(c.rows[i].calibrated_on) << i;
  for (size_t i = 3; i < c.rows.size(); ++i) EXPECT_FALSE(c.rows[i].calibrated_on) << i;

  const MemoryCheckRow& oom = c.rows[3];
  EXPECT_EQ(oom.config, "ac=none lbs=2 seq=2048");
  EXPECT_EQ(oom.status, "oom");
  EXPECT_FALSE(oom.measured_gib);
  EXPECT_TRUE(oom.over_headroom);
  EXPECT_FALSE(oom.fits_calibrated);
  EXPECT_EQ(c.over_headroom, 1);
  EXPECT_EQ(c.over_headroom_predicted_to_fit, 0);

  // fake_trainer's memory is a made-up model, ~30% off the terms; three
  // trials (all without AC) bring the scales to it: those within 10%, the
  // full-AC configs they extrapolate to within 20%, and the median error at
  // most half of the uncalibrated one.
  EXPECT_EQ(c.uncalibrated.count, 7);
  EXPECT_GT(c.uncalibrated.median, 0.15);
  EXPECT_LT(c.calibrated.median, c.uncalibrated.median / 2);
  for (const auto& row : c.rows) {
    if (!row.measured_gib) continue;
    const double err = std::abs(row.calibrated.memory_gib / *row.measured_gib - 1);
    EXPECT_LT(err, row.config.rfind("ac=none", 0) == 0 ? 0.10 : 0.20) << row.config;
  }
  EXPECT_EQ(c.held_out.count, 4);
  EXPECT_LT(c.held_out.median, 0.20);

  const std::string table = format_memory_check(c);
  EXPECT_NE(table.find("ac=none lbs=2 seq=2048  oom"), std::string::npos) << table;
  EXPECT_NE(table.find("capacity: 12.0 GiB, headroom 90%"), std::string::npos) << table;
  EXPECT_NE(table.find("over headroom: 1 (measured or out of memory), predicted to fit: 0"), std::string::npos)
      << table;
}

TEST(MemoryCheck, AStudyThatWasNeverRunIsBadInput) {
  TempDir dir;
  const Study s = run_study(dir);
  Space space = load_space(s.space);
  space.study.name = "another";
  Store store = Store::open(s.db, Store::Mode::Existing);
  EXPECT_THROW(check_memory(space, store), InputError);
}

}  // namespace
}  // namespace partune::cli_testing
