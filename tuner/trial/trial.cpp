#include "tuner/trial/trial.h"

namespace partune {

namespace {
constexpr std::string_view kStatusNames[] = {"pending", "running", "done", "failed", "pruned"};
constexpr std::string_view kFailureNames[] = {"", "oom", "hang", "timeout", "crash", "nccl", "error"};
}  // namespace

std::string_view to_string(TrialStatus s) { return kStatusNames[static_cast<int>(s)]; }
std::string_view to_string(FailureClass f) { return kFailureNames[static_cast<int>(f)]; }

std::optional<TrialStatus> parse_trial_status(std::string_view s) {
  for (int i = 0; i < 5; ++i)
    if (kStatusNames[i] == s) return static_cast<TrialStatus>(i);
  return std::nullopt;
}

std::optional<FailureClass> parse_failure_class(std::string_view s) {
  for (int i = 0; i < 7; ++i)
    if (kFailureNames[i] == s) return static_cast<FailureClass>(i);
  return std::nullopt;
}

}  // namespace partune
