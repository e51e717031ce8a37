// Values a job-config key can never take, whatever runs the job: a sequence
// length, step count or log frequency <= 0, a negative learning rate, a
// timeout <= 0, a "<flavor>-L<n>" deeper than the flavor, ... The schema
// (job_config.h) checks types and choices; this checks ranges, so that a
// space file is refused when it is loaded, naming the key, instead of every
// trial failing at launch. Parallel degrees are not here: the planner's
// rules (parallel_dims.h) count the points they reject.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "common/job_config.h"

namespace partune {

// Why `v` is out of range for `key` ("must be > 0, got 0"), or nullopt.
std::optional<std::string> job_value_problem(std::string_view key, const Value& v);

// Keys that name, describe or place a run's outputs (job.description, the
// dump and tensorboard folders, logging sinks, colours) and so cannot change
// a training step on any backend: as a search axis, each value would run the
// same job under another id.
bool is_bookkeeping_key(std::string_view key);

}  // namespace partune
