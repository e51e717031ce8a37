// Reads the [launcher] section of a search-space file (LauncherSpec, in
// space.h): where trials run and how many at once. Included by the space
// reader only.
#pragma once
#include <toml++/toml.h>

#include <string>

#include "tuner/space/space.h"

namespace partune {

// Reads [launcher] into `out`; throws InputError "path:line:col: key
// 'launcher.<key>': reason" for anything it cannot use.
void read_launcher_section(const toml::table& t, const std::string& path, LauncherSpec& out);

// The rules between [launcher] and [hardware]: more than one node needs Slurm
// (locally nothing would start on the other nodes). `nodes_at`: where
// hardware.nodes was read, for the message.
void check_launcher_fits(const LauncherSpec& launcher, const HardwareSpec& hardware, const std::string& nodes_at);

}  // namespace partune
