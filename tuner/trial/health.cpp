#include "tuner/trial/health.h"

#include <cstdio>

namespace partune {

namespace {
std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
}  // namespace

std::optional<std::string> over_memory_limit(FailureClass failure, const TrialMetrics& m, const HealthRule& rule) {
  if (failure == FailureClass::Oom) return std::string("out of memory");
  if (m.oom_errors > 0) return std::to_string(m.oom_errors) + " CUDA OOM errors";
  if (rule.alloc_retries_over_limit && m.alloc_retries > 0)
    return std::to_string(m.alloc_retries) + " allocation retries";
  if (m.memory_pct && *m.memory_pct > 100.0 * rule.memory_headroom)
    return "memory " + fixed(*m.memory_pct, 2) + "% over the " + fixed(100.0 * rule.memory_headroom, 0) + "% headroom";
  return std::nullopt;
}

std::string unhealthy_because(TrialStatus status, FailureClass failure, const TrialMetrics& m, const HealthRule& rule) {
  if (status != TrialStatus::Done) return "status " + std::string(to_string(status));
  if (auto why = over_memory_limit(failure, m, rule)) return *why;
  return "";
}

}  // namespace partune
