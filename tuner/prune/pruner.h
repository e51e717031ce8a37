// The Pruner: decides whether a finished trial hit the memory limit and which
// not-yet-run candidates that makes pointless. A candidate is dominated when
// it is identical to the trial except that it needs at least as much memory
// on every memory axis (larger local batch, longer sequence, lighter
// activation checkpointing) and more on at least one.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tuner/trial/health.h"
#include "tuner/trial/trial.h"

namespace partune {

// Memory order of activation-checkpoint settings: full < selective (every Nth
// block: larger N saves less) < none. Returns a number that grows with memory.
double ac_memory_rank(const JobConfig& config);

// True when `other` needs at least as much memory as `trial` and strictly
// more on one of lbs / seq_len / AC, all other settings being equal.
bool needs_more_memory(const Candidate& trial, const Candidate& other);

struct PruneDecision {
  std::string candidate_id;
  std::string reason;
};

// The candidates among `pending` that a trial over the limit (`why`) dominates.
std::vector<PruneDecision> dominated_by(const Candidate& trial, const std::string& why,
                                        const std::vector<const Candidate*>& pending);

}  // namespace partune
