#include "tuner/study/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/job_keys.h"
#include "common/printable.h"
#include "tuner/report/format.h"
#include "tuner/report/report.h"

namespace partune {
using fmt::fixed;
using fmt::memory;
using fmt::thousands;
using fmt::value;

std::string describe_axes(const std::map<std::string, Value>& axes) {
  std::string out;
  for (const auto& [key, v] : axes) out += (out.empty() ? "" : " ") + keys::short_name(key) + "=" + value(v);
  return out;
}

void Progress::clear_live_line() {
  if (live_ && line_open_) {
    out_ << "\r\033[2K";
    line_open_ = false;
  }
}

void Progress::redraw() {
  if (!live_) return;
  std::string line = trial_label_;
  if (last_step_) {
    line += " | step " + std::to_string(last_step_->step) + "/" + std::to_string(steps_);
    if (last_step_->mfu) line += " mfu " + fixed(*last_step_->mfu, 2) + "%";
    if (last_step_->memory_gib) line += " mem " + memory(last_step_->memory_gib, last_step_->memory_pct);
  }
  if (!best_.empty()) line += " | best " + best_;
  line += " | ETA " + eta();
  out_ << "\r\033[2K" << line << std::flush;
  line_open_ = true;
}

std::string Progress::eta() const {
  if (trials_timed_ == 0 && !budget_left_) return "?";
  double s = trials_timed_
                 ? trial_wall_sum_ / static_cast<double>(trials_timed_) * static_cast<double>(remaining_) / parallel_
                 : *budget_left_;
  if (budget_left_) s = std::min(s, *budget_left_);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%.0fh%02.0fm", std::floor(s / 3600), std::fmod(s, 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%.0fm%02.0fs", std::floor(s / 60), std::fmod(s, 60));
  else
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

void Progress::study_start(const std::string& study, int64_t candidates, int64_t finished, int64_t to_run) {
  out_ << "study " << study << ": " << candidates << " candidates, " << finished << " already finished, " << to_run
       << " to run\n";
}

void Progress::trial_start(int64_t index, int64_t total, const Candidate& c, int attempt, int steps) {
  steps_ = steps;
  last_step_.reset();
  trial_label_ = "[" + std::to_string(index) + (total > 0 ? "/" + std::to_string(total) : "") + "] " + c.id + " " +
                 describe_axes(c.axes);
  if (attempt > 1) trial_label_ += " (attempt " + std::to_string(attempt) + ")";
  if (live_)
    redraw();
  else
    out_ << trial_label_ << ": started\n" << std::flush;
}

void Progress::step(const StepRow& row, const std::string& trial_id) {
  last_step_ = row;
  if (live_) {
    redraw();
    return;
  }
  out_ << "  " << (trial_id.empty() ? "" : trial_id + " ") << "step " << row.step << "/" << steps_;
  if (row.loss) out_ << " loss " << fixed(*row.loss, 4);
  if (row.mfu) out_ << " mfu " << fixed(*row.mfu, 2) << "%";
  if (row.tps) out_ << " tps " << thousands(*row.tps);
  if (row.memory_gib) out_ << " memory " << memory(row.memory_gib, row.memory_pct);
  out_ << "\n" << std::flush;
}

void Progress::trial_end(const Candidate& c, TrialStatus status, FailureClass failure, const std::string& reason,
                         const TrialMetrics& m, double wall_s) {
  clear_live_line();
  trial_wall_sum_ += wall_s;
  ++trials_timed_;
  out_ << "[" << to_string(status) << "] " << c.id << " " << describe_axes(c.axes) << ":";
  if (m.mfu) out_ << " mfu " << fixed(*m.mfu, 2) << "%";
  if (m.tps) out_ << " tps " << thousands(*m.tps);
  if (m.memory_gib) out_ << " memory " << memory(m.memory_gib, m.memory_pct);
  if (m.alloc_retries) out_ << " retries " << m.alloc_retries;
  if (failure != FailureClass::None) out_ << " failure " << to_string(failure);
  if (!reason.empty()) out_ << " (" << printable(reason) << ")";
  out_ << " in " << fixed(wall_s, 1) << " s\n" << std::flush;
}

void Progress::status(const std::string& line) {
  clear_live_line();
  out_ << line;
  if (!best_.empty()) out_ << ", best " << best_;
  out_ << ", ETA " << eta() << "\n" << std::flush;
}

void Progress::pruned(const std::string& id, const std::string& reason) {
  clear_live_line();
  out_ << "[pruned] " << id << ": " << printable(reason) << "\n" << std::flush;
}

void Progress::note(const std::string& message) {
  clear_live_line();
  out_ << printable(message) << "\n" << std::flush;
}

void Progress::best(const std::string& id, double v, const std::string& objective) {
  best_ = objective + " " + (objective == "tps" ? thousands(v) : fixed(v, 2)) + " (" + id + ")";
}

}  // namespace partune
