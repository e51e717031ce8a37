#include "tuner/launch/embedded_backend.h"

#include "common/error.h"

namespace partune {

std::vector<ProcessSpec> EmbeddedBackend::processes(const TrialLaunchContext& ctx) const {
  return processes(ctx, free_tcp_port());
}

std::vector<ProcessSpec> EmbeddedBackend::processes(const TrialLaunchContext& ctx, int master_port) const {
  if (ctx.nodes != 1)
    throw InputError("embedded backend: nodes = " + std::to_string(ctx.nodes) +
                     ": the local launcher runs single-node trials only (use [launcher] kind = \"slurm\")");
  if (ctx.devices < 1)
    throw InputError("embedded backend: devices = " + std::to_string(ctx.devices) + ": must be >= 1");
  std::vector<ProcessSpec> out;
  for (int rank = 0; rank < ctx.devices; ++rank) {
    ProcessSpec p;
    p.argv = {trainer_path_, "--job.config_file", ctx.config_file};
    p.env = ctx.extra_env;
    p.env["RANK"] = std::to_string(rank);
    p.env["LOCAL_RANK"] = std::to_string(rank);
    p.env["WORLD_SIZE"] = std::to_string(ctx.devices);
    p.env["LOCAL_WORLD_SIZE"] = std::to_string(ctx.devices);
    p.env["MASTER_ADDR"] = "127.0.0.1";
    p.env["MASTER_PORT"] = std::to_string(master_port);
    p.env["PARTUNE_METRICS_DIR"] = ctx.log_dir;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace partune
