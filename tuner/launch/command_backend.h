// The command backend: one process from an argv template. In every argv
// element and env value the placeholders (placeholders.h: {config_file}
// {devices} {nodes} {trial_id} {log_dir} {device_type}) are replaced; a
// `{name}` with any other identifier name throws InputError naming it; braces
// around anything else (JSON, say) stay as they are. The template's env
// (after substitution), then the context's env (which wins), are added to
// the environment. Runs in `workdir` ("": inherited).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "tuner/launch/backend.h"

namespace partune {

class CommandBackend : public Backend {
 public:
  CommandBackend(std::vector<std::string> argv_template, std::map<std::string, std::string> env,
                 std::string workdir = "")
      : argv_(std::move(argv_template)), env_(std::move(env)), workdir_(std::move(workdir)) {}
  std::vector<ProcessSpec> processes(const TrialLaunchContext& ctx) const override;

 private:
  std::vector<std::string> argv_;
  std::map<std::string, std::string> env_;
  std::string workdir_;
};

// The template substitution of the command backend, for one string.
std::string substitute_placeholders(const std::string& text, const TrialLaunchContext& ctx);

}  // namespace partune
