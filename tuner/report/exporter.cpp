#include "tuner/report/exporter.h"

#include <cstdio>

#include "common/job_keys.h"
#include "common/printable.h"
#include "common/utc.h"
#include "tuner/report/format.h"
#include "tuner/report/report.h"

namespace partune {

namespace {

// A value on one comment line: a newline would end the comment, and TOML
// allows no other control character in one either.
std::string one_line(const std::string& s) { return printable(s); }

// What the planner resolves for one world size (planner.h canonicalize()).
bool is_resolved_key(const std::string& key) { return key == keys::kDpShard || key == keys::kGbs; }

std::string shell_quote(const std::string& s) {
  const bool safe = !s.empty() && s.find_first_not_of(
                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789_-.,/:=+@%") == std::string::npos;
  if (safe) return s;
  // A control byte (C0, DEL, or a byte of a C1 control, U+0080-U+009F) would
  // act on the terminal that shows the line: such a word is written as
  // $'...' with every control byte as \xNN (bash, zsh and ksh read it back).
  bool control = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    control = control || c < 0x20 || c == 0x7f ||
              (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f &&
               static_cast<unsigned char>(s[i + 1]) >= 0x80);
  }
  if (control) {
    std::string out = "$'";
    for (size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      const bool c1 = c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                      static_cast<unsigned char>(s[i + 1]) <= 0x9f;
      char buf[16];
      if (c1) {
        std::snprintf(buf, sizeof buf, "\\xc2\\x%02x", static_cast<unsigned char>(s[++i]));
        out += buf;
      } else if (c < 0x20 || c == 0x7f) {
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      } else if (c == '\'' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else {
        out += static_cast<char>(c);
      }
    }
    return out + "'";
  }
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

ProductionConfig production_config(const TrialRecord& r, const std::optional<JobConfig>& base) {
  ProductionConfig p;
  if (!base) {
    p.config = r.config;
    return p;
  }
  p.config = *base;
  for (const auto& [key, value] : r.config.values()) {
    const bool tuned = r.axes.count(key) != 0;
    if (!tuned && base->has(key)) continue;  // the production value
    if (!tuned && is_resolved_key(key)) {
      p.resolved.push_back(key + " = " + value_to_string(value));
      continue;
    }
    p.config.set(key, value);
  }
  for (const auto& key : {std::string(keys::kDpShard), std::string(keys::kGbs)})
    if (!r.axes.count(key) && base->has(key) && r.config.has(key) && !(base->get(key) == r.config.get(key)))
      p.resolved.push_back(key + " = " + value_to_string(*r.config.get(key)));
  return p;
}

std::string export_toml(const TrialRecord& r, const std::optional<JobConfig>& base) {
  const ProductionConfig p = production_config(r, base);
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
  if (!p.resolved.empty()) {
    std::string list;
    for (const auto& line : p.resolved) list += (list.empty() ? "" : ", ") + line;
    out +=
        "# resolved by the planner for the study's world size and left to torchtitan (not written): " + one_line(list) +
        "\n";
  }
  if (base) out += "# base: the study's [base] with the tuned values on top; trial-only settings are not exported\n";
  out += "\n" + p.config.to_toml();
  return out;
}

std::string export_cli(const TrialRecord& r) {
  std::string out;
  for (const auto& token : axis_overrides(r)) out += (out.empty() ? "" : " ") + shell_quote(token);
  return out;
}

nlohmann::json export_json(const TrialRecord& r, const std::optional<JobConfig>& base) {
  nlohmann::json j = trial_to_json(r, false);
  const ProductionConfig p = production_config(r, base);
  nlohmann::json full = nlohmann::json::object();
  for (const auto& [key, value] : p.config.values()) full[key] = value_to_json(value);
  j["job_config"] = full;
  j["resolved"] = p.resolved;
  j["cli"] = axis_overrides(r);
  return j;
}

}  // namespace partune
