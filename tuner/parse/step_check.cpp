#include "tuner/parse/step_check.h"

#include <cmath>
#include <sstream>

namespace partune {

namespace {

std::optional<std::string> out_of_range(const char* name, const std::optional<double>& v, double max) {
  if (!v || (*v >= 0 && *v <= max)) return std::nullopt;  // NaN fails both comparisons
  std::ostringstream why;
  why << name << ' ' << *v;
  if (std::isnan(*v)) return why.str() + " is not a number";
  if (std::isinf(*v)) return why.str() + " is infinite";
  if (*v < 0) return why.str() + " is negative";
  why << " is over " << max << ", not a real measurement";
  return why.str();
}

}  // namespace

std::optional<std::string> implausible_step(const StepRow& row) {
  if (row.step < 0) return "step " + std::to_string(row.step) + " is negative";
  if (row.step > kMaxStepNumber) return "step " + std::to_string(row.step) + " is over 2^53";
  if (auto why = out_of_range("mfu", row.mfu, kMaxStepMfuPct)) return why;
  if (auto why = out_of_range("tps", row.tps, kMaxStepTps)) return why;
  if (auto why = out_of_range("tflops", row.tflops, kMaxStepTflops)) return why;
  if (auto why = out_of_range("memory", row.memory_gib, kMaxStepMemoryGib)) return why;
  if (auto why = out_of_range("memory %", row.memory_pct, kMaxStepMemoryPct)) return why;
  return std::nullopt;
}

}  // namespace partune
