#include "bench/memory_check_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/job_keys.h"

namespace partune {

namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string config_label(const TrialRecord& t) {
  std::string s;
  for (const auto& [key, value] : t.axes) {
    std::string v = value_to_string(value);
    if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
    s += (s.empty() ? "" : " ") + keys::short_name(key) + "=" + v;
  }
  return s;
}

ErrorSummary summarise(std::vector<double> errors) {
  ErrorSummary s;
  s.count = static_cast<int>(errors.size());
  if (errors.empty()) return s;
  std::sort(errors.begin(), errors.end());
  const size_t n = errors.size();
  s.median = n % 2 ? errors[n / 2] : (errors[n / 2 - 1] + errors[n / 2]) / 2;
  s.worst = errors.back();
  return s;
}

std::string status_of(const TrialRecord& t) {
  if (t.status == TrialStatus::Failed && t.failure == FailureClass::Oom) return "oom";
  if (t.status == TrialStatus::Failed) return "failed (" + std::string(to_string(t.failure)) + ")";
  return std::string(to_string(t.status));
}

std::string percent(const ErrorSummary& s) {
  if (s.count == 0) return "n/a";
  return "median " + fmt("%.1f%%", 100 * s.median) + ", worst " + fmt("%.1f%%", 100 * s.worst) + " over " +
         std::to_string(s.count);
}

}  // namespace

MemoryCheck check_memory(const Space& space, Store& store, int calibration_trials, double sigmas) {
  if (!store.study(space.study.name))
    throw InputError(store.path() + ": no study '" + space.study.name + "' (run `tune --space " + space.path +
                     "` first)");
  const std::vector<TrialRecord> trials = store.trials(space.study.name);
  MemoryCheck check;
  check.headroom = space.prune.memory_headroom;
  check.sigmas = sigmas;
  check.capacity_gib = device_memory_gib(space);
  for (const auto& t : trials)
    if (!check.capacity_gib && t.status == TrialStatus::Done) check.capacity_gib = device_memory_from_trial(t.metrics);

  auto uncalibrated = make_memory_model(space);
  auto calibrated = make_memory_model(space);
  for (const auto& t : trials) {
    if (check.calibration_trials >= calibration_trials) break;
    if (t.status != TrialStatus::Done || !t.metrics.memory_gib) continue;
    calibrated->observe(t.config, *t.metrics.memory_gib);
    ++check.calibration_trials;
  }

  std::vector<double> err_uncal, err_cal, err_held;
  int observed = 0;
  for (const auto& t : trials) {
    MemoryCheckRow r;
    r.id = t.id;
    r.config = config_label(t);
    r.status = status_of(t);
    r.uncalibrated = uncalibrated->predict(t.config);
    r.calibrated = calibrated->predict(t.config);
    if (t.status == TrialStatus::Done && t.metrics.memory_gib) {
      r.measured_gib = t.metrics.memory_gib;
      r.calibrated_on = observed++ < check.calibration_trials;
      const double m = *r.measured_gib;
      err_uncal.push_back(std::abs(r.uncalibrated.memory_gib / m - 1));
      err_cal.push_back(std::abs(r.calibrated.memory_gib / m - 1));
      if (!r.calibrated_on) err_held.push_back(err_cal.back());
    }
    if (check.capacity_gib) {
      const double cap = *check.capacity_gib;
      r.fits_uncalibrated = predicted_to_fit(r.uncalibrated, cap, check.headroom, sigmas);
      r.fits_calibrated = predicted_to_fit(r.calibrated, cap, check.headroom, sigmas);
      r.over_headroom = r.status == "oom" || (r.measured_gib && *r.measured_gib > check.headroom * cap);
    } else {
      r.over_headroom = r.status == "oom";
    }
    if (r.over_headroom) {
      ++check.over_headroom;
      if (r.fits_uncalibrated || r.fits_calibrated) ++check.over_headroom_predicted_to_fit;
    }
    check.rows.push_back(std::move(r));
  }
  check.uncalibrated = summarise(err_uncal);
  check.calibrated = summarise(err_cal);
  check.held_out = summarise(err_held);
  return check;
}

std::string format_memory_check(const MemoryCheck& c) {
  size_t width = 6;
  for (const auto& r : c.rows) width = std::max(width, r.config.size());
  std::ostringstream o;
  auto pad = [](std::string s, size_t w) { return s.size() >= w ? s : s + std::string(w - s.size(), ' '); };
  auto lpad = [](std::string s, size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; };
  auto err = [](const MemoryCheckRow& r, const MemoryPrediction& p) {
    return r.measured_gib ? fmt("%+.1f%%", 100 * (p.memory_gib / *r.measured_gib - 1)) : std::string("");
  };
  auto pred = [](const MemoryPrediction& p) {
    return p.known ? fmt("%.1f", p.memory_gib) + " +- " + fmt("%.1f", p.sigma_gib) : std::string("unknown");
  };
  o << pad("config", width) << "  " << pad("status", 8) << lpad("measured", 9) << "  " << lpad("uncalibrated", 14)
    << lpad("err", 8) << "  " << lpad("calibrated", 14) << lpad("err", 8) << "  fits (unc/cal)  over headroom\n";
  for (const auto& r : c.rows) {
    std::string measured = r.measured_gib ? fmt("%.2f", *r.measured_gib) : "-";
    if (r.calibrated_on) measured += "*";
    std::string fits = c.capacity_gib
                           ? std::string(r.fits_uncalibrated ? "yes" : "no") + "/" + (r.fits_calibrated ? "yes" : "no")
                           : "?";
    std::string over = r.over_headroom ? ((r.fits_uncalibrated || r.fits_calibrated) ? "yes  MISSED" : "yes") : "";
    o << pad(r.config, width) << "  " << pad(r.status, 8) << lpad(measured, 9) << "  " << lpad(pred(r.uncalibrated), 14)
      << lpad(err(r, r.uncalibrated), 8) << "  " << lpad(pred(r.calibrated), 14) << lpad(err(r, r.calibrated), 8)
      << "  " << pad(fits, 15) << over << "\n";
  }
  o << "\n";
  o << "capacity: " << (c.capacity_gib ? fmt("%.1f GiB", *c.capacity_gib) : std::string("unknown (no measured trial)"))
    << ", headroom " << fmt("%.4g%%", 100 * c.headroom) << ", margin " << fmt("%.3g", c.sigmas) << " sigma\n";
  o << "calibrated on the first " << c.calibration_trials << " measured trials (plan order, marked *)\n";
  o << "uncalibrated error: " << percent(c.uncalibrated) << "\n";
  o << "calibrated error:   " << percent(c.calibrated) << "; held out: " << percent(c.held_out) << "\n";
  o << "over headroom: " << c.over_headroom
    << " (measured or out of memory), predicted to fit: " << c.over_headroom_predicted_to_fit << "\n";
  return o.str();
}

}  // namespace partune
