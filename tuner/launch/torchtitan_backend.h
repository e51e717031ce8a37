// The torchtitan backend: one process, torchrun --nproc_per_node=<devices>
// [--nnodes=<nodes>] [--node_rank=<node_rank> --rdzv_endpoint=<host:port>,
// through Slurm] <torchrun_args...> -m <module> --job.config_file
// <config_file> (placeholders in torchrun_args filled in as the command
// backend does), in `workdir` ("": inherited), env
// PYTORCH_ALLOC_CONF=expandable_segments:True (as torchtitan's run_train.sh)
// plus the context's env.
#pragma once
#include <string>
#include <vector>

#include "tuner/launch/backend.h"

namespace partune {

class TorchtitanBackend : public Backend {
 public:
  // module "" means "torchtitan.train".
  TorchtitanBackend(std::string torchrun, std::vector<std::string> torchrun_args, std::string module,
                    std::string workdir)
      : torchrun_(std::move(torchrun)),
        torchrun_args_(std::move(torchrun_args)),
        module_(std::move(module)),
        workdir_(std::move(workdir)) {}
  std::vector<ProcessSpec> processes(const TrialLaunchContext& ctx) const override;

 private:
  std::string torchrun_;
  std::vector<std::string> torchrun_args_;
  std::string module_;
  std::string workdir_;
};

}  // namespace partune
