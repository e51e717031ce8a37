// Peak memory measured on GPUs (`memory:` of the step lines: GiB reserved by
// the caching allocator, the maximum over ranks), with the configs that
// produced them. Real data, not fixtures: each row names where it was
// recorded. Shared by the memory model's accuracy tests.
#pragma once
#include <string>
#include <vector>

#include "common/job_config.h"

namespace partune::testing {

struct MemoryMeasurement {
  std::string label;
  std::string flavor;
  int world = 1;
  int dp_shard = -1, tp = 1, ep = 1;
  int64_t lbs = 1, seq_len = 4096;
  std::string ac;        // "none", "full", or a selective option ("2", "op")
  bool compile = false;  // compile.enable
  double capacity_gib = 0;
  double measured_gib = 0;
  std::string source;
  bool loose = false;       // older code: a loose check only
  bool torchtitan = false;  // compiled torchtitan, the class compile.enable = true targets
};

// The rows, in the order they were measured.
const std::vector<MemoryMeasurement>& measured_memory();

// examples/qwen3_30b_a3b.toml with the row's keys set.
JobConfig config_of(const MemoryMeasurement& m);

}  // namespace partune::testing
