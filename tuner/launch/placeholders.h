// The placeholders a backend's argv, torchrun_args and env values may hold,
// declared once: the space loader checks them, the command backend fills
// them in.
#pragma once
#include <string>
#include <vector>

namespace partune {

// Names without braces, in documentation order: {config_file} {devices} ...
inline const std::vector<std::string>& backend_placeholders() {
  static const std::vector<std::string> names = {"config_file", "devices", "nodes",
                                                 "trial_id",    "log_dir", "device_type"};
  return names;
}

}  // namespace partune
