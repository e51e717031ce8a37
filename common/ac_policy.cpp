#include "common/ac_policy.h"

#include <charconv>

#include "common/job_keys.h"

namespace partune {

std::optional<AcPolicy> ac_policy_of(const JobConfig& config, AcPolicyError* error) {
  auto fail = [&](const char* key, std::string message) -> std::optional<AcPolicy> {
    if (error != nullptr) *error = {key, std::move(message)};
    return std::nullopt;
  };
  const std::string mode = config.get_string(keys::kAcMode);
  AcPolicy p;
  if (mode == "none") return p;
  if (mode == "full") {
    p.mode = AcPolicyMode::Full;
    return p;
  }
  if (mode == "memory_budget") {
    p.mode = AcPolicyMode::MemoryBudget;
    return p;
  }
  if (mode != "selective") return fail(keys::kAcMode, "unknown mode '" + mode + "'");
  p.mode = AcPolicyMode::Selective;
  const std::string opt = config.get_string(keys::kAcOption);
  if (opt == "op") {
    p.per_op = true;
    return p;
  }
  int64_t n = -1;
  auto [ptr, ec] = std::from_chars(opt.data(), opt.data() + opt.size(), n);
  if (ec != std::errc() || ptr != opt.data() + opt.size() || n < 0)
    return fail(keys::kAcOption, "must be 'op' or a non-negative integer, got '" + opt + "'");
  p.every_n = n;
  return p;
}

}  // namespace partune
