// The night study the report tests share: fake_trainer on the command
// backend, 2 devices, 108 points of which 36 break a planner rule; with a
// 10.1 GiB fake device and an 85% headroom the first trial runs out of memory
// and the second runs at its limit with allocation retries (both before the
// memory model knows the device), two go over the headroom, one hangs, the
// OOM prunes larger configs and the memory model prunes most of the rest
// before launch (more than the report lists in one group).
#pragma once
#include <string>

#include "cli_testing.h"

namespace partune::cli_testing {

Study write_night_study(const TempDir& dir);

// Runs it to the end (a test failure if tune does not exit 0).
Study run_night_study(const TempDir& dir);

// One value of a query's first row and column ("" when none).
std::string scalar(const std::string& db, const std::string& sql);

}  // namespace partune::cli_testing
