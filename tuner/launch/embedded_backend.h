// The embedded backend: `devices` processes of partune's trainer, argv
// {trainer, "--job.config_file", config_file}, env RANK, LOCAL_RANK,
// WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT (a free
// port per trial), PARTUNE_METRICS_DIR=log_dir, plus the context's env.
// Single node only. Emulated ([backend] emulate): one process, the trainer
// with --emulate-world <devices> --emulate-rank 0, no rank variables: rank 0
// of the world alone on the slot's first device.
#pragma once
#include <string>
#include <vector>

#include "tuner/launch/backend.h"

namespace partune {

class EmbeddedBackend : public Backend {
 public:
  explicit EmbeddedBackend(std::string trainer_path, bool emulate = false)
      : trainer_path_(std::move(trainer_path)), emulate_(emulate) {}
  std::vector<ProcessSpec> processes(const TrialLaunchContext& ctx) const override;
  // The same with a given rendezvous port.
  std::vector<ProcessSpec> processes(const TrialLaunchContext& ctx, int master_port) const;
  bool one_process_per_rank() const override { return true; }

 private:
  std::string trainer_path_;
  bool emulate_ = false;
};

}  // namespace partune
