// `tune export`: a trial as something to train with.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tuner/store/store.h"

namespace partune {

// The production config of a trial: the study's base job config (the
// production TOML a user tunes from) with the trial's tuned values on top.
//   - every base key is kept, with the base's value, unless it was tuned:
//     what the short trial overrides (steps, log_freq, checkpoint.enable, the
//     dump folder, wandb) and what the planner drops as having no effect for
//     this trial (compile.components without compile.enable, the AC option
//     under full AC) come back as the base has them;
//   - values the planner resolved for the study's world size
//     (data_parallel_shard_degree, global_batch_size) are not written where
//     the base leaves them to torchtitan (-1 or unset) and no axis tuned
//     them, so the file stays right on another world size; `resolved` lists
//     them as "key = value";
//   - keys the planner states explicitly (parallel degrees, batch shape, AC
//     mode, compile, model) are written even when they equal the defaults.
// Without a base (an ingested run, or a study recorded before bases were
// stored) it is the trial's recorded config, resolved values included.
struct ProductionConfig {
  JobConfig config;
  std::vector<std::string> resolved;
};
ProductionConfig production_config(const TrialRecord& r, const std::optional<JobConfig>& base);

// A complete torchtitan v0.2.x job config: a comment header (study, trial,
// status, measured mfu / tps / tflops / memory / retries, what was resolved
// and left to torchtitan, export date, "exported by partune") followed by
// production_config(r, base) as TOML, which it parses back to.
std::string export_toml(const TrialRecord& r, const std::optional<JobConfig>& base = std::nullopt);

// The trial's axes as torchtitan CLI overrides, one line:
// "--parallelism.tensor_parallel_degree 2 --activation_checkpoint.mode selective".
// Tokens that a POSIX shell would split or expand are single-quoted.
std::string export_cli(const TrialRecord& r);

// trial_to_json(r, false) plus "job_config" (every key of the production
// config), "resolved" (what was left to torchtitan) and "cli" (the override
// tokens, unquoted).
nlohmann::json export_json(const TrialRecord& r, const std::optional<JobConfig>& base = std::nullopt);

}  // namespace partune
