// What a step row may hold before it is believed. A trial's printed numbers
// rank it against the others: one NaN, infinite, negative or impossible
// throughput or memory value (a broken trainer, a counter that wrapped, a
// hostile command) would otherwise be stored as a healthy result and rank
// first in `best`. Such a line fails the trial instead.
#pragma once
#include <optional>
#include <string>

#include "tuner/trial/trial.h"

namespace partune {

// The bounds, per device. Far above any accelerator of today, far below what
// a wrapped counter or a unit mix-up prints.
// torchtitan measures MFU against an A100's peak on a device it does not
// know, so a B200 prints several hundred percent: only far past that is absurd.
inline constexpr double kMaxStepMfuPct = 10000;
inline constexpr double kMaxStepMemoryPct = 100;             // of the device's memory
inline constexpr double kMaxStepMemoryGib = 1e5;             // 100 TiB
inline constexpr double kMaxStepTps = 1e9;                   // tokens per second
inline constexpr double kMaxStepTflops = 1e5;                // 100 PFLOPS
inline constexpr int64_t kMaxStepNumber = int64_t{1} << 53;  // exact as a JSON / SQLite REAL too

// Why `row` cannot be a real measurement ("mfu -3 is negative"), or nullopt.
// Loss and grad_norm are not judged: a diverged run prints "nan" there and is
// still a throughput measurement.
std::optional<std::string> implausible_step(const StepRow& row);

}  // namespace partune
