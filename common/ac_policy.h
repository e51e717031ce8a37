// Activation checkpointing as the job config states it (activation_checkpoint.mode
// and .selective_ac_option), read once: the trainer runs it, the memory model
// sizes it, the pruner orders it and the throughput model prices its recompute.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "common/job_config.h"

namespace partune {

enum class AcPolicyMode { None, Full, Selective, MemoryBudget };

struct AcPolicy {
  AcPolicyMode mode = AcPolicyMode::None;
  bool per_op = false;  // selective "op": torchtitan's per-op policy (save matmul and attention outputs)
  int64_t every_n = 0;  // selective N: every Nth block checkpointed; 0 checkpoints every block
};

// Why a config's AC keys cannot be read: the key and the reason.
struct AcPolicyError {
  std::string key;
  std::string message;
};

// The policy, or nullopt with *error filled (when given) for an unknown mode
// or a selective option that is neither "op" nor a non-negative integer.
std::optional<AcPolicy> ac_policy_of(const JobConfig& config, AcPolicyError* error = nullptr);

}  // namespace partune
