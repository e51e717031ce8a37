// torchtitan v0.2.2's learning-rate schedule (components/lr_scheduler.py):
// linear warmup, a stable phase, then linear / sqrt / cosine decay to
// min_lr_factor, as a LambdaLR multiplier of the configured lr.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config/trainer_config.h"

namespace partune::trainer {

class LRSchedule {
 public:
  // training_steps: training.steps, used unless c.total_steps is set (as
  // torchtitan's build_lr_schedulers). Adjustments torchtitan makes (warmup longer
  // than the run, warmup + decay longer than the run) are applied and
  // described in `warnings` (torchtitan logs them as warnings).
  LRSchedule(const LRScheduleConfig& c, int64_t training_steps, std::vector<std::string>* warnings = nullptr);

  // LambdaLR's multiplier for its 0-based counter. Training step n (1-based)
  // runs with factor(n - 1): the scheduler steps after each optimizer step.
  double factor(int64_t scheduler_step) const;
  // The lr training step n (1-based) uses.
  double lr_for_step(int64_t step, double base_lr) const { return base_lr * factor(step - 1); }

  int64_t warmup_steps() const { return warmup_; }
  int64_t stable_steps() const { return stable_; }  // includes torchtitan's virtual last step
  int64_t decay_steps() const { return decay_; }

 private:
  int64_t warmup_ = 0, stable_ = 0, decay_ = 0;
  std::string decay_type_;
  double min_lr_factor_ = 0.0;
};

}  // namespace partune::trainer
