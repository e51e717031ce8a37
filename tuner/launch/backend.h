// The process list of one trial for each backend: embedded (our trainer, one
// process per rank), torchtitan (torchrun) and command (a user's argv
// template). Argvs only: nothing here is ever given to a shell.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "tuner/launch/launcher.h"

namespace partune {

struct TrialLaunchContext {
  std::string trial_id;
  std::string config_file;  // the trial's job config (TOML)
  std::string log_dir;      // the trial's directory for logs and metrics files
  int devices = 1;          // ranks per node
  int nodes = 1;
  std::string device_type = "cuda";              // "cuda" | "cpu"
  std::map<std::string, std::string> extra_env;  // added to every process (e.g. PARTUNE_STUDY_TOKEN)
};

// `devices` processes of the trainer: argv {trainer, "--job.config_file",
// config_file}; env RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
// MASTER_ADDR=127.0.0.1, MASTER_PORT, PARTUNE_METRICS_DIR=log_dir, plus
// extra_env. Single node only (nodes > 1 throws InputError).
std::vector<ProcessSpec> embedded_processes(const std::string& trainer_path, const TrialLaunchContext& ctx,
                                            int master_port);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
// released). Throws std::system_error if no socket can be bound.
int free_tcp_port();

// torchrun's options as torchtitan's run_train.sh passes them, without its
// --local-ranks-filter: every rank's lines come through, prefixed "[rankN]:".
std::vector<std::string> default_torchrun_args();

// One process: torchrun --nproc_per_node=<devices> [--nnodes=<nodes>]
// <torchrun_args...> -m <module> --job.config_file <config_file>, in `workdir`
// ("" : inherited), env PYTORCH_ALLOC_CONF=expandable_segments:True plus
// extra_env. `module` "" means "torchtitan.train".
std::vector<ProcessSpec> torchtitan_processes(const std::string& torchrun,
                                              const std::vector<std::string>& torchrun_args, const std::string& module,
                                              const std::string& workdir, const TrialLaunchContext& ctx);

// One process from a template: in every argv element and env value the
// placeholders {config_file} {devices} {nodes} {trial_id} {log_dir}
// {device_type} are replaced. A `{name}` with any other identifier name throws
// InputError naming it; braces around anything else (JSON, say) stay as they
// are. env (after substitution), then extra_env (which wins), are added to
// the environment.
std::vector<ProcessSpec> command_processes(const std::vector<std::string>& argv_template,
                                           const std::map<std::string, std::string>& env,
                                           const TrialLaunchContext& ctx);

// The template substitution of command_processes, for one string.
std::string substitute_placeholders(const std::string& text, const TrialLaunchContext& ctx);

}  // namespace partune
