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
  // As torchtitan's run_train.sh runs production (and the torchtitan backend
  // its trials): the caching allocator with expandable segments, whose peak
  // the memory model predicts. A setting in the trial's own environment wins.
  const auto process = [&](std::vector<std::string> argv) {
    ProcessSpec p;
    p.argv = std::move(argv);
    p.env = ctx.extra_env;
    p.env["PARTUNE_METRICS_DIR"] = ctx.log_dir;
    if (!p.env.count("PYTORCH_ALLOC_CONF")) p.env["PYTORCH_ALLOC_CONF"] = "expandable_segments:True";
    return p;
  };
  std::vector<ProcessSpec> out;
  if (emulate_) {  // rank 0 of the world, alone: no rank variables, no rendezvous
    out.push_back(process({trainer_path_, "--job.config_file", ctx.config_file, "--emulate-world",
                           std::to_string(ctx.devices), "--emulate-rank", "0"}));
    return out;
  }
  for (int rank = 0; rank < ctx.devices; ++rank) {
    ProcessSpec p = process({trainer_path_, "--job.config_file", ctx.config_file});
    p.env["RANK"] = std::to_string(rank);
    p.env["LOCAL_RANK"] = std::to_string(rank);
    p.env["WORLD_SIZE"] = std::to_string(ctx.devices);
    p.env["LOCAL_WORLD_SIZE"] = std::to_string(ctx.devices);
    p.env["MASTER_ADDR"] = "127.0.0.1";
    p.env["MASTER_PORT"] = std::to_string(master_port);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace partune
