// trainer/train/lr_schedule: torchtitan v0.2.2's warmup / stable / decay
// multiplier, checked against values worked by hand from lr_scheduler.py.
#include <gtest/gtest.h>

#include "trainer/train/lr_schedule.h"

namespace partune::trainer {
namespace {

LRScheduleConfig cfg(int64_t warmup, std::optional<double> ratio, const char* type, double min_lr) {
  LRScheduleConfig c;
  c.warmup_steps = warmup;
  c.decay_ratio = ratio;
  c.decay_type = type;
  c.min_lr_factor = min_lr;
  return c;
}

TEST(AppSchedule, LinearWarmupThenLinearDecay) {
  // steps 10, warmup 2: decay 8, stable 10 + 1 - 2 - 8 = 1 (the virtual last step)
  LRSchedule s(cfg(2, std::nullopt, "linear", 0.0), 10);
  EXPECT_EQ(s.warmup_steps(), 2);
  EXPECT_EQ(s.decay_steps(), 8);
  EXPECT_EQ(s.stable_steps(), 1);
  const struct {
    int64_t step;  // training step, 1-based
    double factor;
  } rows[] = {{1, 0.5}, {2, 1.0}, {3, 1.0}, {4, 0.875}, {5, 0.75}, {10, 0.125}};
  for (const auto& r : rows) EXPECT_DOUBLE_EQ(s.lr_for_step(r.step, 1.0), r.factor) << "step " << r.step;
  EXPECT_DOUBLE_EQ(s.lr_for_step(1, 8e-4), 4e-4);
}

TEST(AppSchedule, CosineWithDecayRatioAndMinLr) {
  // steps 100, warmup 10, decay round(25) = 25, stable 66, min_lr_factor 0.1
  LRSchedule s(cfg(10, 0.25, "cosine", 0.1), 100);
  EXPECT_EQ(s.decay_steps(), 25);
  EXPECT_EQ(s.stable_steps(), 66);
  EXPECT_DOUBLE_EQ(s.factor(0), 0.1);
  EXPECT_DOUBLE_EQ(s.factor(9), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(75), 1.0);
  EXPECT_NEAR(s.factor(76), 0.9964516155915151, 1e-15);   // progress 1/25
  EXPECT_NEAR(s.factor(99), 0.10354838440848502, 1e-15);  // progress 24/25
}

TEST(AppSchedule, SqrtDecayWithoutWarmup) {
  LRSchedule s(cfg(0, 0.5, "sqrt", 0.0), 20);  // decay 10, stable 11
  EXPECT_DOUBLE_EQ(s.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);
  EXPECT_NEAR(s.factor(15), 0.2928932188134524, 1e-15);  // progress 0.5
}

TEST(AppSchedule, AdjustmentsAndPythonRounding) {
  std::vector<std::string> w;
  LRSchedule a(cfg(10, std::nullopt, "linear", 0.0), 5, &w);  // warmup clipped to the run
  EXPECT_EQ(a.warmup_steps(), 5);
  EXPECT_DOUBLE_EQ(a.factor(4), 1.0);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], "Warmup steps (10) exceed total steps (5). Adjusting warmup steps to 5.");

  w.clear();
  LRSchedule b(cfg(5, 0.8, "linear", 0.0), 10, &w);  // decay 8 -> 5
  EXPECT_EQ(b.decay_steps(), 5);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0], "Warmup (5) + decay (8) steps exceed total steps (10). Adjusting decay steps to 5.");

  // Python's round() takes halves to even: round(2.5) = 2, round(3.5) = 4.
  EXPECT_EQ(LRSchedule(cfg(0, 0.5, "linear", 0.0), 5).decay_steps(), 2);
  EXPECT_EQ(LRSchedule(cfg(0, 0.5, "linear", 0.0), 7).decay_steps(), 4);
}

TEST(AppSchedule, TotalStepsOverridesTrainingSteps) {
  LRScheduleConfig c = cfg(2, std::nullopt, "linear", 0.0);
  c.total_steps = 20;  // the run has 10 steps; the schedule spans 20
  LRSchedule s(c, 10);
  EXPECT_EQ(s.decay_steps(), 18);
  EXPECT_EQ(s.stable_steps(), 1);
  EXPECT_DOUBLE_EQ(s.factor(9), 1.0 - 7.0 / 18.0);  // progress (10 - 3) / 18
}

}  // namespace
}  // namespace partune::trainer
