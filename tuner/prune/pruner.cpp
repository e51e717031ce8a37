#include "tuner/prune/pruner.h"

#include <set>

#include "common/ac_policy.h"
#include "common/job_keys.h"

namespace partune {

using namespace keys;

double ac_memory_rank(const JobConfig& config) {
  const std::optional<AcPolicy> p = ac_policy_of(config);
  if (!p) return 1.0;  // unreadable: no order claimed beyond "between"
  switch (p->mode) {
    case AcPolicyMode::Full:
      return 0.0;
    case AcPolicyMode::None:
      return 2.0;
    case AcPolicyMode::MemoryBudget:
      return 1.0;  // between full and none, no finer order claimed
    case AcPolicyMode::Selective:
      break;
  }
  if (p->per_op) return 1.5;  // saves some ops of every block: between full and none
  if (p->every_n >= 1) return 1.0 + (1.0 - 1.0 / static_cast<double>(p->every_n));  // every Nth block
  return 0.0;  // selective 0 checkpoints every block, as full
}

bool needs_more_memory(const Candidate& trial, const Candidate& other) {
  static const std::set<std::string, std::less<>> kMemoryKeys = {kLbs, kSeqLen, kAcMode, kAcOption, kGbs};
  // Every other setting must be equal.
  const auto& a = trial.config.values();
  const auto& b = other.config.values();
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  for (const auto& k : keys) {
    if (kMemoryKeys.count(k)) continue;
    if (trial.config.get(k) != other.config.get(k)) return false;
  }
  const int64_t lbs_a = trial.config.get_int(kLbs), lbs_b = other.config.get_int(kLbs);
  const int64_t seq_a = trial.config.get_int(kSeqLen), seq_b = other.config.get_int(kSeqLen);
  const double ac_a = ac_memory_rank(trial.config), ac_b = ac_memory_rank(other.config);
  if (lbs_b < lbs_a || seq_b < seq_a || ac_b < ac_a) return false;
  return lbs_b > lbs_a || seq_b > seq_a || ac_b > ac_a;
}

std::vector<PruneDecision> dominated_by(const Candidate& trial, const std::string& why,
                                        const std::vector<const Candidate*>& pending) {
  std::vector<PruneDecision> out;
  for (const Candidate* c : pending) {
    if (c->id == trial.id || !needs_more_memory(trial, *c)) continue;
    out.push_back({c->id, "needs at least the memory of trial " + trial.id + " (" + why + ")"});
  }
  return out;
}

}  // namespace partune
