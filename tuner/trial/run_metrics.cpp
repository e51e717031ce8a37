#include "tuner/trial/run_metrics.h"

#include <algorithm>

namespace partune {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace

nlohmann::json optional_to_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

std::optional<double> optional_number(const nlohmann::json& j, const char* key) {
  if (j.contains(key) && j[key].is_number()) return j[key].get<double>();
  return std::nullopt;
}

TrialMetrics combine_runs(const std::vector<TrialMetrics>& runs, RunStatistic how) {
  if (runs.size() == 1) return runs.front();
  TrialMetrics out;
  auto rate = [&](std::optional<double> TrialMetrics::*field) -> std::optional<double> {
    std::vector<double> v;
    for (const auto& r : runs)
      if (r.*field) v.push_back(*(r.*field));
    if (v.empty()) return std::nullopt;
    return how == RunStatistic::Median ? median(v) : mean(v);
  };
  auto max = [&](std::optional<double> TrialMetrics::*field) -> std::optional<double> {
    std::optional<double> m;
    for (const auto& r : runs)
      if (r.*field && (!m || *(r.*field) > *m)) m = r.*field;
    return m;
  };
  out.mfu = rate(&TrialMetrics::mfu);
  out.tps = rate(&TrialMetrics::tps);
  out.tflops = rate(&TrialMetrics::tflops);
  out.memory_gib = max(&TrialMetrics::memory_gib);
  out.memory_pct = max(&TrialMetrics::memory_pct);
  for (const auto& r : runs) {
    out.alloc_retries += r.alloc_retries;
    out.oom_errors += r.oom_errors;
    out.counted_steps += r.counted_steps;
  }
  return out;
}

nlohmann::json metrics_to_json(const TrialMetrics& m) {
  return {{"mfu", optional_to_json(m.mfu)},
          {"tps", optional_to_json(m.tps)},
          {"tflops", optional_to_json(m.tflops)},
          {"memory_gib", optional_to_json(m.memory_gib)},
          {"memory_pct", optional_to_json(m.memory_pct)},
          {"alloc_retries", m.alloc_retries},
          {"oom_errors", m.oom_errors},
          {"counted_steps", m.counted_steps}};
}

TrialMetrics metrics_from_json(const nlohmann::json& j) {
  TrialMetrics m;
  m.mfu = optional_number(j, "mfu");
  m.tps = optional_number(j, "tps");
  m.tflops = optional_number(j, "tflops");
  m.memory_gib = optional_number(j, "memory_gib");
  m.memory_pct = optional_number(j, "memory_pct");
  m.alloc_retries = j.value("alloc_retries", int64_t{0});
  m.oom_errors = j.value("oom_errors", int64_t{0});
  m.counted_steps = j.value("counted_steps", int64_t{0});
  return m;
}

}  // namespace partune
