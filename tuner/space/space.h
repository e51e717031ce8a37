// The search-space file: what a study explores and how it runs its trials.
// docs/search-space.md documents every key.
//
// load_space() promises: every key it returns was read from the file or is the
// documented default; anything it cannot use (an unknown section or key, a
// wrong type, an empty axis, an axis that is not a job-config key, a value a
// job-config key does not accept, a missing required key, a bad enum, a number
// out of range, an unknown backend placeholder, a TOML syntax error) throws
// partune::InputError "path:line:col: key 'section.key': reason". Nothing is defaulted
// silently and nothing is dropped.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/job_config.h"
#include "tuner/trial/health.h"

namespace partune {

struct StudySpec {
  std::string name;               // required; [A-Za-z0-9._-]+ (it names files)
  std::string db_path;            // TOML key "db"; default "results/<name>.db"
  std::string objective = "mfu";  // maximised: "mfu" | "tps" | "tflops"
};

struct HardwareSpec {
  std::string device_type = "cuda";  // "cuda" | "cpu"
  int devices = 8;                   // ranks per node in one trial
  int nodes = 1;
  std::optional<double> memory_gib;   // per device; nullopt: detected at run time
  std::optional<double> peak_tflops;  // bf16 dense peak per device; nullopt: from the device name
  int world_size() const { return devices * nodes; }
};

struct BackendSpec {
  std::string kind = "embedded";  // "embedded" | "torchtitan" | "command"
  // command: the argv template; placeholders as tuner/launch/placeholders.h.
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // added to the trial's environment (placeholders allowed)
  std::string trainer;                     // embedded: path to bin/trainer; empty: next to the tune binary
  // torchtitan: `torchrun --nproc_per_node={devices} <torchrun_args> -m <module> --job.config_file {config_file}`
  std::string torchrun = "torchrun";
  std::vector<std::string> torchrun_args;
  std::string module = "torchtitan.train";
  std::string workdir;  // working directory of the trial; empty: tune's
  // embedded: each trial runs rank 0 of the [hardware] world alone on one
  // device (trainer --emulate-world): its memory is the real rank's, its
  // step time has no communication (docs/search-space.md, [backend]).
  bool emulate = false;
};

// [confirm]: the study's best configs re-run on a production backend (the
// embedded trainer is a proxy: same ranking, eager-like memory). The keys of
// [backend] plus top_k.
struct ConfirmSpec {
  BackendSpec backend;
  int top_k = 3;
};

struct TrialSpec {
  int steps = 20;
  int warmup_steps = 3;  // steps not counted in the medians; < steps
  double timeout_s = 1800;
  double hang_timeout_s = 600;  // no output line for this long = hang
  int repeats = 1;
};

// [prune]: the study's health rule (memory_headroom in (0, 1]), and whether
// candidates the memory model predicts over the headroom are pruned before
// launch (off: only measured trials prune, e.g. to measure the model itself).
struct PruneSpec : HealthRule {
  bool before_launch = true;
};

struct SearchSpec {
  std::string strategy = "guided";    // one of strategy_names() (tuner/search/strategy.h)
  std::optional<int64_t> max_trials;  // trials launched by one run of tune; nullopt: no cap
  uint64_t seed = 0;
  std::optional<double> time_budget_s;  // the study ends by itself after this; resumable
  int confirm_top_k = 3;                // guided: re-run the top k at the end
};

// One searched key and its values, in file order; values have the key's schema
// type (an int given for a float key is stored as a float).
struct Axis {
  std::string key;  // "section.key", a job-config key
  std::vector<Value> values;
};

// [launcher]: where trials run and how many at once (docs/cluster.md).
struct LauncherSpec {
  std::string kind = "local";  // "local" | "slurm"
  // slurm: passed to every srun when set.
  std::string partition;
  std::string account;
  std::optional<double> time_limit_s;   // srun --time, whole minutes rounded up
  std::vector<std::string> extra_args;  // added to every srun's options (an argv, never a shell string)
  int parallel_trials = 1;              // trials running at once
};

struct Space {
  std::string path;  // the space file, as given
  StudySpec study;
  HardwareSpec hardware;
  BackendSpec backend;
  LauncherSpec launcher;
  TrialSpec trial;
  PruneSpec prune;
  JobConfig base;          // [base] config_file merged under the inline [base.<section>] tables
  std::vector<Axis> axes;  // file order
  SearchSpec search;
  std::optional<ConfirmSpec> confirm;  // absent: no production check
  // Where each [base] key ("section.key") and each axis ("space.section.key")
  // was set, as "path:line:col" (a [base] config_file's keys name that file),
  // for refusals found after loading (e.g. the trainer's --check).
  std::map<std::string, std::string> origins;
};

// Reads and validates a search-space file (see the promise above).
Space load_space(const std::string& path);
// The same from text; `path` names the source in messages and anchors
// [base] config_file (relative to its folder).
Space load_space_from_string(std::string_view text, const std::string& path);

}  // namespace partune
