// A trial backend: what runs one trial, as a list of processes. One file per
// backend: embedded (our trainer, one process per rank), torchtitan
// (torchrun), command (a user's argv template). Argvs only: nothing here is
// ever given to a shell.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tuner/launch/launcher.h"

namespace partune {

struct BackendSpec;

struct TrialLaunchContext {
  std::string trial_id;
  std::string config_file;  // the trial's job config (TOML)
  std::string log_dir;      // the trial's directory for logs and metrics files
  int devices = 1;          // ranks per node
  int nodes = 1;
  std::string device_type = "cuda";              // "cuda" | "cpu"
  std::map<std::string, std::string> extra_env;  // added to every process (e.g. PARTUNE_STUDY_TOKEN); wins
  // Through Slurm (one launcher per node): the rendezvous "host:port" on the
  // trial's first node and the node rank argument as the node's task sees it
  // (tune's slurm-task helper puts SLURM_NODEID in for "{node_rank}").
  std::string rdzv_endpoint;
  std::string node_rank;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // The processes of one trial. Throws InputError for a trial this backend
  // cannot run (e.g. more nodes than it supports).
  virtual std::vector<ProcessSpec> processes(const TrialLaunchContext& ctx) const = 0;
  // True when process i prints rank i's lines on its own pipe; false when the
  // processes' output carries every rank's lines (with rank prefixes).
  virtual bool one_process_per_rank() const { return false; }
};

// The backend a space's [backend] section names. `trainer_path`: the
// embedded trainer's binary (used by kind "embedded" only).
std::unique_ptr<Backend> make_backend(const BackendSpec& spec, const std::string& trainer_path);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
// released). Throws std::system_error if no socket can be bound.
int free_tcp_port();

}  // namespace partune
