// Trials as Slurm job steps (docs/cluster.md). tune runs inside an allocation
// (sbatch or salloc); each trial is one `srun` step on nodes tune picks from
// the allocation, named after the study and the trial so that a later tune
// (or the guard of a dead one) can find and cancel what is left of it.
// Everything here runs Slurm's own clients, argv only.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tuner/launch/launcher.h"
#include "tuner/space/space.h"

namespace partune {

// The allocation tune runs in.
struct SlurmAllocation {
  std::string job_id;
  std::vector<std::string> nodes;              // node names, in Slurm's order
  std::map<std::string, std::string> address;  // node name -> NodeAddr (what MASTER_ADDR must be)
};

// Reads SLURM_JOB_ID and SLURM_JOB_NODELIST (expanded by `scontrol show
// hostnames`) and each node's NodeAddr (`scontrol -o show node`). Throws
// InputError naming `space_path` when tune is not inside an allocation or
// scontrol cannot answer.
SlurmAllocation current_allocation(const std::string& space_path);

// The nodes of each of `slots` trial slots, `nodes_per_trial` each: disjoint
// while the allocation has enough nodes, else taken round-robin (trials then
// share nodes; Slurm keeps their CPUs and GPUs apart). Throws InputError when
// the allocation has fewer nodes than one trial needs.
std::vector<std::vector<std::string>> slurm_slot_nodes(const std::vector<std::string>& nodes, int slots,
                                                       int nodes_per_trial, const std::string& space_path);

// What one step asks Slurm for.
struct SrunShape {
  std::string name;                // --job-name
  std::vector<std::string> nodes;  // --nodelist, --nodes
  int tasks_per_node = 1;          // --ntasks-per-node
  int gpus_per_node = 0;           // --gpus-per-node; 0: none asked
};

// srun [--job-name ... --exclusive ... launcher options ... extra_args] command...
std::vector<std::string> srun_argv(const LauncherSpec& launcher, const SrunShape& shape,
                                   const std::vector<std::string>& command);

// "partune.<study token>.<trial id>": a step's name; step_name_prefix is
// what every step of the study's starts with.
std::string step_name(const std::string& study_token, const std::string& trial_id);
std::string step_name_prefix(const std::string& study_token);

// Cancels every step of job `job_id` (every job of this user when `job_id` is
// empty) whose name starts with `name_prefix` (squeue, then scancel).
// Returns how many it cancelled; Slurm errors are swallowed (the guard calls
// it with nowhere to report them).
int cancel_steps(const std::string& job_id, const std::string& name_prefix);

// The nodes of `nodes` that cannot run a step of job `job_id`, each with
// why: its state as sinfo prints it (`sinfo --noheader --Node --nodes=a,b
// --format="%N %T"`) when down, drained or draining, failed, or not
// responding (a trailing '*'); or "no longer in job J" when Slurm took it out
// of the allocation (a job started with --no-kill loses a node that dies).
// Empty when every one can, or when Slurm cannot answer (then nothing is
// left out on a guess).
std::map<std::string, std::string> down_nodes(const std::string& job_id, const std::vector<std::string>& nodes);

// A duration of the cluster's configuration in seconds (`scontrol show
// config`, a line "Key = 5 sec"), such as SlurmdTimeout (how long a node's
// slurmd may stay silent before Slurm marks the node DOWN) or MessageTimeout
// (how long one of Slurm's pings may take). nullopt when Slurm cannot say.
std::optional<double> slurm_config_seconds(const std::string& key);

// Whether srun's error says it lost contact with a node's slurmd without
// naming the node ("slurm_receive_msgs: [[host]:port] failed: Zero Bytes
// were transmitted or received", "Communication connection failure").
bool srun_lost_a_slurmd(const std::string& reason);

// The output lines and exit code of a short Slurm client call (no shell;
// ended after timeout_s).
struct ClientResult {
  int exit_code = -1;
  std::vector<std::string> lines;
};
ClientResult run_client(const std::vector<std::string>& argv, double timeout_s = 30);

}  // namespace partune
