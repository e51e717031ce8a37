// `tune export`: a trial as something to train with.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "tuner/store/store.h"

namespace partune {

// A complete torchtitan v0.2.x job config: a comment header (study, trial,
// status, measured mfu / tps / tflops / memory / retries, export date,
// "exported by partune") followed by the record's full config as TOML. It
// parses back (JobConfig::from_toml_string) to a config equal to r.config.
std::string export_toml(const TrialRecord& r);

// The trial's axes as torchtitan CLI overrides, one line:
// "--parallelism.tensor_parallel_degree 2 --activation_checkpoint.mode selective".
// Tokens that a POSIX shell would split or expand are single-quoted.
std::string export_cli(const TrialRecord& r);

// trial_to_json(r, false) plus "job_config" (every key of the full config)
// and "cli" (the override tokens, unquoted).
nlohmann::json export_json(const TrialRecord& r);

}  // namespace partune
