#include "tuner/report/exporter.h"

#include "common/utc.h"
#include "tuner/report/format.h"
#include "tuner/report/report.h"

namespace partune {

namespace {

// A value on one comment line: a newline would end the comment.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string shell_quote(const std::string& s) {
  const bool safe = !s.empty() && s.find_first_not_of(
                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789_-.,/:=+@%") == std::string::npos;
  if (safe) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> axis_overrides(const TrialRecord& r) {
  JobConfig axes;
  for (const auto& [key, value] : r.axes) axes.set(key, value, "trial " + r.id + " axes");
  return axes.to_cli();
}


}  // namespace

std::string export_toml(const TrialRecord& r) {
  const TrialMetrics& m = r.metrics;
  std::string out;
  out += "# torchtitan job config exported by partune\n";
  out += "# study: " + one_line(r.study) + "\n";
  out += "# trial: " + one_line(r.id) + " (status " + std::string(to_string(r.status)) + ", source " +
         one_line(r.source) + ")\n";
  out += "# measured: mfu " + (m.mfu ? fmt::fixed(*m.mfu, 2) + "%" : "n/a") + ", tps " +
         (m.tps ? fmt::thousands(*m.tps) : "n/a") + ", tflops " + (m.tflops ? fmt::fixed(*m.tflops, 2) : "n/a") +
         ", memory " + fmt::memory(m.memory_gib, m.memory_pct) + ", alloc retries " + std::to_string(m.alloc_retries) +
         " (" + std::to_string(m.counted_steps) + " counted steps)\n";
  if (!r.finished_at.empty()) out += "# measured at: " + one_line(r.finished_at) + "\n";
  out += "# exported at: " + utc_now_iso8601() + "\n";
  if (!r.axes.empty()) out += "# tuned overrides: " + one_line(export_cli(r)) + "\n";
  out += "\n" + r.config.to_toml();
  return out;
}

std::string export_cli(const TrialRecord& r) {
  std::string out;
  for (const auto& token : axis_overrides(r)) out += (out.empty() ? "" : " ") + shell_quote(token);
  return out;
}

nlohmann::json export_json(const TrialRecord& r) {
  nlohmann::json j = trial_to_json(r, false);
  nlohmann::json full = nlohmann::json::object();
  for (const auto& [key, value] : r.config.values()) full[key] = value_to_json(value);
  j["job_config"] = full;
  j["cli"] = axis_overrides(r);
  return j;
}

}  // namespace partune
