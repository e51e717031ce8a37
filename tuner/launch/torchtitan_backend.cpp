#include "tuner/launch/torchtitan_backend.h"

#include "tuner/launch/command_backend.h"

namespace partune {

std::vector<ProcessSpec> TorchtitanBackend::processes(const TrialLaunchContext& ctx) const {
  ProcessSpec p;
  p.argv = {torchrun_, "--nproc_per_node=" + std::to_string(ctx.devices)};
  if (ctx.nodes > 1 || !ctx.rdzv_endpoint.empty()) p.argv.push_back("--nnodes=" + std::to_string(ctx.nodes));
  if (!ctx.rdzv_endpoint.empty())
    p.argv.insert(p.argv.end(), {"--node_rank=" + ctx.node_rank, "--rdzv_endpoint=" + ctx.rdzv_endpoint});
  for (const auto& a : torchrun_args_) p.argv.push_back(substitute_placeholders(a, ctx));
  p.argv.insert(p.argv.end(), {"-m", module_.empty() ? std::string("torchtitan.train") : module_, "--job.config_file",
                               ctx.config_file});
  p.env = ctx.extra_env;
  p.env["PYTORCH_ALLOC_CONF"] = "expandable_segments:True";  // as run_train.sh
  p.cwd = workdir_;
  return {p};
}

}  // namespace partune
