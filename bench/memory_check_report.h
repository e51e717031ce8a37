// memory_check's table: a finished study's measured peaks against the memory
// model's predictions, uncalibrated and after calibrating on the first
// measured trials in plan order (docs/memory-model.md, "Checking it").
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tuner/estimate/memory_model.h"
#include "tuner/space/space.h"
#include "tuner/store/store.h"

namespace partune {

struct MemoryCheckRow {
  std::string id;
  std::string config;  // the axis values, short
  std::string status;  // "done", "oom", "failed (<class>)", "pruned", "pending", ...
  std::optional<double> measured_gib;
  bool calibrated_on = false;  // one of the trials the calibrated model observed
  bool over_headroom = false;  // measured over headroom * capacity, or out of memory
  MemoryPrediction uncalibrated, calibrated;
  bool fits_uncalibrated = true, fits_calibrated = true;  // predicted_to_fit at the margin
};

struct ErrorSummary {
  int count = 0;
  double median = 0, worst = 0;  // |predicted / measured - 1|
};

struct MemoryCheck {
  std::vector<MemoryCheckRow> rows;  // plan order
  std::optional<double> capacity_gib;
  double headroom = 0.9;
  double sigmas = 2.0;
  int calibration_trials = 0;                       // observed by the calibrated model
  ErrorSummary uncalibrated, calibrated, held_out;  // held_out: measured rows not calibrated on
  int over_headroom = 0;
  int over_headroom_predicted_to_fit = 0;  // misses: the model would have launched them
};

// Reads the study of `space` from `store`. Capacity: [hardware] memory_gib,
// else learned from the first measured trial. InputError when the study is
// not in the database.
MemoryCheck check_memory(const Space& space, Store& store, int calibration_trials = 3, double sigmas = 2.0);

std::string format_memory_check(const MemoryCheck& check);

}  // namespace partune
