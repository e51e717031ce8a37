// torchtitan v0.2.x parallel-dimension rules (ParallelDims._validate) plus the
// model-side rules later versions check up front. One source of truth for the
// tuner's planner and the trainer's mesh construction.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/flavors.h"

namespace partune {

struct ParallelDims {
  int dp_replicate = 1;
  int dp_shard = -1;  // -1: the ranks left over
  int cp = 1;
  int tp = 1;
  int pp = 1;
  int ep = 1;
  int etp = 1;
};

// A broken rule: `rule` is a stable name (used in `tune plan` counts and
// tests), `message` says what and why in words.
struct RuleViolation {
  std::string rule;
  std::string message;
};

// Rule names, stable: tests and `tune plan` output use them.
namespace rules {
inline constexpr const char* kDegreePositive = "degree_positive";
inline constexpr const char* kDpShardResolve = "dp_shard_resolve";    // dp_shard=-1 has no integer solution
inline constexpr const char* kWorldSize = "world_size_product";       // dp_r*dp_s*cp*tp*pp != world
inline constexpr const char* kEtpOneOrTp = "etp_one_or_tp";           // EP>1: ETP must be 1 or TP
inline constexpr const char* kEpBorrowEtpTp = "ep_borrow_etp_tp";     // ETP=TP: (dp_s*CP) % EP
inline constexpr const char* kEpBorrowEtp1 = "ep_borrow_etp1";        // ETP=1: (dp_s*CP*TP) % EP
inline constexpr const char* kSeqLenDivisible = "seq_len_divisible";  // seq_len % (2*CP*TP)
inline constexpr const char* kHeadsDivisible = "heads_divisible_tp";
inline constexpr const char* kKvHeadsDivisible = "kv_heads_divisible_tp";
inline constexpr const char* kExpertsDivisible = "experts_divisible_ep";
inline constexpr const char* kEpNeedsMoe = "ep_needs_moe";             // EP>1 on a dense flavor
inline constexpr const char* kGlobalBatch = "global_batch_divisible";  // gbs % (lbs*dp_r*dp_s)
inline constexpr const char* kPipelineUnsupported = "pp_unsupported";  // Qwen3 in v0.2.2 has no PP
}  // namespace rules

// Resolves dp_shard = -1 in place and checks the mesh rules for `world_size`
// ranks. Returns every violation (empty: legal).
std::vector<RuleViolation> check_parallel_dims(ParallelDims& dims, int world_size);

struct BatchShape {
  int64_t local_batch_size = 8;
  int64_t global_batch_size = -1;  // -1: lbs * dp degree
  int64_t seq_len = 2048;
};

// Model- and batch-side rules for resolved dims (call check_parallel_dims first).
std::vector<RuleViolation> check_model_rules(const ParallelDims& dims, const Flavor& flavor, const BatchShape& batch);

// Data-parallel degree (dp_replicate * dp_shard) and gradient-accumulation steps.
int64_t dp_degree(const ParallelDims& dims);
int64_t grad_accumulation_steps(const ParallelDims& dims, const BatchShape& batch);

}  // namespace partune
