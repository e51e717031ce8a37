#include "night_study.h"

#include <gtest/gtest.h>

namespace partune::cli_testing {

Study write_night_study(const TempDir& dir) {
  SpaceOptions o;
  o.name = "night";
  o.objective = "mfu";
  o.hardware = "device_type = \"cpu\"\ndevices = 2\n";
  o.fake_memory_gib = 10.1;
  o.hang_timeout_s = 2;  // the hang; a loaded machine still prints a step every 30 ms
  o.prune = "memory_headroom = 0.85\n";
  // Slow enough steps that the over-time chart has a time axis; one config hangs.
  o.trainer_args = {"--step-ms",    "30",
                    "--hang-after", "3",
                    "--only-when",  "parallelism.tensor_parallel_degree=2",
                    "--only-when",  "parallelism.expert_parallel_degree=1",
                    "--only-when",  "training.local_batch_size=1",
                    "--only-when",  "training.seq_len=2048",
                    "--only-when",  "activation_checkpoint.mode=full"};
  o.base = "[base.metrics]\nlog_freq = 1\n";
  // Largest first where it matters: the first trials run out of memory
  // before any trial has told the memory model the device's size.
  o.axes = R"("parallelism.tensor_parallel_degree" = [1, 2, 4]
"parallelism.expert_parallel_degree" = [1, 2]
"training.local_batch_size" = [2, 4, 1]
"training.seq_len" = [2048, 1024]
"activation_checkpoint.mode" = ["none", "selective", "full"]
)";
  return write_space(dir, o);
}

Study run_night_study(const TempDir& dir) {
  Study s = write_night_study(dir);
  Result run = tune({"--space", s.space, "--plain"}, dir.path(), 120);
  EXPECT_EQ(run.exit_code, 0) << run.describe();
  return s;
}

std::string scalar(const std::string& db, const std::string& sql) {
  auto rows = query(db, sql);
  return rows.empty() || rows[0].empty() ? "" : rows[0][0];
}

}  // namespace partune::cli_testing
