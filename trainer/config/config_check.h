// `trainer --check`: whether the trainer would run a config, decided by the
// same code a run uses (parse_trainer_args / trainer_config_from_job), with
// no model, device or process group built. `tune` asks it before a study
// runs, so a value the embedded trainer refuses is refused at plan time
// (naming the space file's line) instead of failing every trial at launch,
// and the answer follows the trainer as it gains features.
#pragma once
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace partune::trainer {

struct CheckResult {
  bool ok = true;
  std::string key;    // the job-config key the refusal names; "" if none
  std::string error;  // the message a run would print after "trainer: error: "
};

// One config as a run gets it: `args` without --check (`--job.config_file F`,
// `--section.key value`, trainer flags) for `world_size` ranks.
CheckResult check_args(const std::vector<std::string>& args, int world_size);

// Many configs, one JSON object a line on `in`:
//   {"world_size": N, "config": {"section.key": value, ...}}
// and one JSON line a config on `out`, in order:
//   {"ok": true} or {"ok": false, "key": "section.key", "error": "..."}.
// A line that is not such an object gets {"ok": false, "error": ...}.
void check_lines(std::istream& in, std::ostream& out);

}  // namespace partune::trainer
