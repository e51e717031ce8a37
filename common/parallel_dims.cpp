#include "common/parallel_dims.h"

#include <string>

namespace partune {

namespace {
std::string str(int64_t v) { return std::to_string(v); }
}  // namespace

std::vector<RuleViolation> check_parallel_dims(ParallelDims& d, int world_size) {
  std::vector<RuleViolation> out;
  auto fail = [&](const char* rule, std::string msg) { out.push_back({rule, std::move(msg)}); };

  for (auto [name, v] :
       {std::pair{"data_parallel_replicate_degree", d.dp_replicate}, std::pair{"context_parallel_degree", d.cp},
        std::pair{"tensor_parallel_degree", d.tp}, std::pair{"pipeline_parallel_degree", d.pp},
        std::pair{"expert_parallel_degree", d.ep}, std::pair{"expert_tensor_parallel_degree", d.etp}}) {
    if (v < 1) fail(rules::kDegreePositive, std::string(name) + " must be >= 1, got " + str(v));
  }
  if (d.dp_shard < 1 && d.dp_shard != -1)
    fail(rules::kDegreePositive, "data_parallel_shard_degree must be -1 or >= 1, got " + str(d.dp_shard));
  if (!out.empty()) return out;

  const int64_t others = int64_t{d.dp_replicate} * d.cp * d.tp * d.pp;
  if (d.dp_shard == -1) {
    if (world_size % others != 0) {
      fail(rules::kDpShardResolve,
           "dp_replicate*cp*tp*pp = " + str(others) + " does not divide world size " + str(world_size));
      return out;
    }
    d.dp_shard = static_cast<int>(world_size / others);
  }
  if (others * d.dp_shard != world_size) {
    fail(rules::kWorldSize, "dp_replicate(" + str(d.dp_replicate) + ") * dp_shard(" + str(d.dp_shard) + ") * cp(" +
                                str(d.cp) + ") * tp(" + str(d.tp) + ") * pp(" + str(d.pp) + ") != world size " +
                                str(world_size));
    return out;
  }
  if (d.ep > 1) {
    if (d.etp != 1 && d.etp != d.tp) {
      fail(rules::kEtpOneOrTp, "with EP > 1, ETP must be 1 or equal TP (" + str(d.tp) + "), got " + str(d.etp));
    } else {
      // torchtitan v0.2.2 builds the sparse mesh (pp, dp_replicate, efsdp, ep, etp)
      // with efsdp = dp_shard*cp*tp / (etp*ep): EP borrows dp_shard and CP, and
      // with ETP = 1 also TP. Older releases additionally required EP % CP == 0
      // (ETP = TP) or EP % (CP*TP) == 0 (ETP = 1); v0.2.2 does not.
      const int64_t borrowable = int64_t{d.dp_shard} * d.cp * (d.etp == 1 ? d.tp : 1);
      if (borrowable % d.ep != 0) {
        if (d.etp != 1)
          fail(rules::kEpBorrowEtpTp,
               "ETP = TP: EP (" + str(d.ep) + ") must divide dp_shard*CP (" + str(borrowable) + ")");
        else
          fail(rules::kEpBorrowEtp1,
               "ETP = 1: EP (" + str(d.ep) + ") must divide dp_shard*CP*TP (" + str(borrowable) + ")");
      }
    }
  }
  return out;
}

int64_t dp_degree(const ParallelDims& d) { return int64_t{d.dp_replicate} * d.dp_shard; }

int64_t grad_accumulation_steps(const ParallelDims& d, const BatchShape& b) {
  const int64_t per_step = b.local_batch_size * dp_degree(d);
  const int64_t gbs = b.global_batch_size == -1 ? per_step : b.global_batch_size;
  return per_step > 0 ? gbs / per_step : 0;
}

std::vector<RuleViolation> check_model_rules(const ParallelDims& d, const Flavor& f, const BatchShape& b) {
  std::vector<RuleViolation> out;
  auto fail = [&](const char* rule, std::string msg) { out.push_back({rule, std::move(msg)}); };
  if (d.pp > 1) fail(rules::kPipelineUnsupported, "Qwen3 has no pipeline parallelism in torchtitan v0.2.2");
  const int64_t seq_div = 2 * int64_t{d.cp} * d.tp;
  if (b.seq_len % seq_div != 0)
    fail(rules::kSeqLenDivisible, "seq_len " + str(b.seq_len) + " is not divisible by 2*CP*TP = " + str(seq_div));
  if (f.n_heads % d.tp != 0)
    fail(rules::kHeadsDivisible, "n_heads " + str(f.n_heads) + " is not divisible by TP " + str(d.tp));
  if (f.n_kv_heads % d.tp != 0)
    fail(rules::kKvHeadsDivisible, "n_kv_heads " + str(f.n_kv_heads) + " is not divisible by TP " + str(d.tp));
  if (d.ep > 1 && !f.moe) fail(rules::kEpNeedsMoe, "EP " + str(d.ep) + " on dense flavor " + f.name);
  if (f.moe && f.num_experts % d.ep != 0)
    fail(rules::kExpertsDivisible, "num_experts " + str(f.num_experts) + " is not divisible by EP " + str(d.ep));
  if (b.local_batch_size < 1) {
    fail(rules::kGlobalBatch, "local_batch_size must be >= 1, got " + str(b.local_batch_size));
  } else if (b.global_batch_size != -1) {
    const int64_t per_step = b.local_batch_size * dp_degree(d);
    if (b.global_batch_size < 1 || b.global_batch_size % per_step != 0)
      fail(rules::kGlobalBatch, "global_batch_size " + str(b.global_batch_size) +
                                    " is not a positive multiple of lbs*dp_replicate*dp_shard = " + str(per_step));
  }
  return out;
}

}  // namespace partune
