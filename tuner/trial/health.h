// The health rule: whether a trial's result is fit to train on, used by both
// the pruner (a trial over the limit prunes what needs more memory) and the
// ranking (`best`, `export --best`). One rule, so the two never disagree.
#pragma once
#include <optional>
#include <string>

#include "tuner/trial/trial.h"

namespace partune {

inline constexpr double kDefaultMemoryHeadroom = 0.90;

struct HealthRule {
  double memory_headroom = kDefaultMemoryHeadroom;  // fraction of device memory a healthy trial may reserve
  bool alloc_retries_over_limit = true;             // allocator retries count as over the limit
};

// Why a trial's outcome is over the memory limit: an OOM (as a failure or
// counted by the allocator), allocation retries when the rule counts them,
// or peak memory over the headroom. nullopt when within it.
std::optional<std::string> over_memory_limit(FailureClass failure, const TrialMetrics& m, const HealthRule& rule);

// Why a trial is not healthy ("" when it is): it must be done and within the
// memory limit.
std::string unhealthy_because(TrialStatus status, FailureClass failure, const TrialMetrics& m, const HealthRule& rule);

}  // namespace partune
