// Plan-time refusal of what the embedded trainer cannot run: every
// candidate's trial config (trial_config(), as a launch would write it) is
// sent to one `trainer --check --stdin` process, which answers each with the
// same validation a run does (trainer/config/config_check.h). The first
// refusal becomes an InputError naming the space file's line of the axis or
// [base] key the trainer named, so `tune plan` and `tune run` exit 2 before
// anything is launched or recorded, and the rule set is the trainer's own.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {

// The embedded trainer's binary: [backend] trainer, else `trainer` next to
// the running tune (tune_exe: argv[0], used when /proc/self/exe is unreadable).
std::string embedded_trainer_path(const Space& space, const std::string& tune_exe);

// For kind = "embedded" only (other backends: nullopt, nothing run). Throws
// InputError for a refused candidate. Returns a note when the trainer could
// not be asked (no binary at `trainer`): the trials will say it then.
std::optional<std::string> check_with_trainer(const Space& space, const std::vector<Candidate>& candidates,
                                              const std::string& trainer);

}  // namespace partune
