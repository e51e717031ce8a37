#include "trainer/train/lr_schedule.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace partune::trainer {

LRSchedule::LRSchedule(const LRScheduleConfig& c, int64_t training_steps, std::vector<std::string>* warnings)
    : warmup_(c.warmup_steps), decay_type_(c.decay_type), min_lr_factor_(c.min_lr_factor) {
  const int64_t total_steps = c.total_steps.value_or(training_steps);
  auto warn = [&](std::string w) {
    if (warnings) warnings->push_back(std::move(w));
  };
  if (warmup_ > total_steps) {
    warn("Warmup steps (" + std::to_string(warmup_) + ") exceed total steps (" + std::to_string(total_steps) +
         "). Adjusting warmup steps to " + std::to_string(total_steps) + ".");
    warmup_ = total_steps;
  }
  if (c.decay_ratio) {
    // Python's round(): halves to even, as nearbyint in the default rounding mode.
    decay_ = static_cast<int64_t>(std::nearbyint(static_cast<double>(total_steps) * *c.decay_ratio));
    if (warmup_ + decay_ > total_steps) {
      warn("Warmup (" + std::to_string(warmup_) + ") + decay (" + std::to_string(decay_) +
           ") steps exceed total steps (" + std::to_string(total_steps) + "). Adjusting decay steps to " +
           std::to_string(total_steps - warmup_) + ".");
      decay_ = total_steps - warmup_;
    }
  } else {
    decay_ = total_steps - warmup_;
  }
  // A virtual last step keeps the lr of the final step above zero.
  stable_ = total_steps + 1 - warmup_ - decay_;
}

double LRSchedule::factor(int64_t step) const {
  if (step < warmup_) return static_cast<double>(step + 1) / static_cast<double>(warmup_);
  if (step < warmup_ + stable_) return 1.0;
  // Here decay_ > 0: warmup + stable + decay = total + 1 and step <= total.
  const double progress = static_cast<double>(step + 1 - warmup_ - stable_) / static_cast<double>(decay_);
  double adj;
  if (decay_type_ == "linear")
    adj = 1.0 - progress;
  else if (decay_type_ == "sqrt")
    adj = 1.0 - std::sqrt(progress);
  else if (decay_type_ == "cosine")
    adj = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  else
    throw std::invalid_argument("unknown lr decay type '" + decay_type_ + "'");
  return min_lr_factor_ + (1.0 - min_lr_factor_) * adj;
}

}  // namespace partune::trainer
