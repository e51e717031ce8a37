// What `tune plan` prints: the planner's candidates, each with the memory
// model's prediction (predicted peak GiB per rank and whether it fits under
// the headroom, when the device's memory is known), plus the study's
// expected cost under the default strategy.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "tuner/plan/planner.h"
#include "tuner/space/space.h"

namespace partune {

// plan_to_json's shape, each candidate with "predicted": {"memory_gib":
// float or null (model cannot speak for the config), "fits": bool or null
// (device memory unknown)}, and a top-level "estimate": {"trials": int,
// "seconds": float, "trials_min": int, "seconds_min": float} (the most and
// the least a study is expected to launch and spend; equal unless the
// strategy decides as it goes).
nlohmann::json plan_output_json(const Space& space, const PlanResult& plan);

// plan_to_table with "predicted" and "fits" columns and a summary line.
std::string plan_output_table(const Space& space, const PlanResult& plan);

}  // namespace partune
