// The planner: turns a Space into the list of legal, distinct candidates.
//
// plan() enumerates the cartesian product of the axes (first axis outermost,
// last axis fastest) over space.base, then for each point:
//   1. applies torchtitan's rules as torchtitan would see the config:
//      check_parallel_dims (world = devices * nodes) and check_model_rules
//      (flavor from model.name / model.flavor); a point that breaks any is
//      counted under the name of the FIRST rule it breaks;
//   2. canonicalises the legal ones (canonicalize() below) and keeps the first
//      of any that canonicalise to the same config (the rest count as
//      duplicates).
// Nothing is launched; the result is a pure function of the Space.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {

// A point of the space that breaks a rule: what `tune plan --rejected` and
// `tune why` show. Its id is config_id() of the config as enumerated (it
// cannot be canonicalised: its parallel dims are not legal).
struct RejectedPoint {
  std::string id;
  std::map<std::string, Value> axes;  // every axis key -> value
  std::string rule;                   // the first rule it breaks (partune::rules)
  std::string message;                // that rule's message: what and why
};

struct PlanResult {
  std::vector<Candidate> candidates;           // legal, distinct, in enumeration order
  std::map<std::string, int64_t> rejected;     // rule name (partune::rules) -> count
  std::vector<RejectedPoint> rejected_points;  // each one, in enumeration order (keep_rejected only)
  std::vector<std::string> notes;              // e.g. model rules skipped for an unknown flavor
  int64_t enumerated = 0;                      // size of the cartesian product
  int64_t duplicates = 0;                      // legal points equal to an earlier one after canonicalising
};

// Throws InputError when the model's flavor is unknown and the backend is
// "embedded" (the trainer could not build it); for the other backends the
// model-side rules (heads, kv heads, experts) are skipped with a note, and the
// mesh, seq_len and batch rules still apply.
// keep_rejected: also list every rejected point (rejected_points); off by
// default, as a large space may reject millions.
PlanResult plan(const Space& space, bool keep_rejected = false);

// The canonical form of a job config whose parallel dims are legal for
// `world_size` ranks: the config that runs, with what has no effect removed
// and what is implicit resolved, so that two configs that run the same job
// get the same config_id():
//   - parallelism.expert_tensor_parallel_degree = 1 when EP = 1 (no effect then);
//   - data_parallel_shard_degree = -1 resolved to its value;
//   - training.global_batch_size = -1 resolved to lbs * dp degree;
//   - activation_checkpoint.selective_ac_option dropped unless mode = "selective";
//   - compile.components dropped unless compile.enable, else without
//     repeats in the order model, loss, others by name (a set to torchtitan);
//   - a numeric selective_ac_option without leading zeros ("02" -> "2");
//   - the keys of canonical_explicit_keys() (and the AC option / compile
//     components where they apply) always set explicitly.
// Every other value is kept as given, so an exported config reads like its base.
JobConfig canonicalize(const JobConfig& config, int world_size);

// Keys a canonical config always sets explicitly (every parallel degree, the
// batch shape, AC mode, compile, model name and flavor): an exported config
// states them even when they equal torchtitan's defaults.
const std::vector<std::string>& canonical_explicit_keys();

// A candidate's id: FNV-1a 64 of the TOML text (JobConfig::to_toml) of the
// config with every explicit value that equals its schema default removed
// (except the canonical explicit keys, always written), as 16 lower-case hex
// digits. "Unset" and "set to the default" hash alike. Pass a canonical config
// (canonicalize()) so that equal jobs get equal ids.
std::string config_id(const JobConfig& canonical);

// {"candidates": [{"id": "...", "config": {"section.key": value, ...}}, ...],
//  "rejected": {"rule_name": count, ...}}; config holds every axis key. With
// rejected points, "rejected_points": [{"id", "config", "rule", "message"}].
nlohmann::json plan_to_json(const PlanResult& result);

// A column another part adds to the plan table (e.g. predicted memory): one
// cell per candidate, in result.candidates order.
struct PlanColumn {
  std::string header;
  std::vector<std::string> cells;
};

// Human-readable: one row per candidate (id, the axis values, then `extra`
// columns), then the counts (enumerated, legal, duplicates, rejected by rule),
// notes and `footer` lines.
std::string plan_to_table(const PlanResult& result, const Space& space, const std::vector<PlanColumn>& extra = {},
                          const std::vector<std::string>& footer = {});

}  // namespace partune
