// How long this process took to reach its first step, and how much host
// memory it needed on the way (the init record's startup_s and
// host_peak_rss_gib; the tuner stores both per trial).
#pragma once

namespace partune::trainer {

struct StartupStats {
  double startup_s = 0;          // from the kernel's start of this process (library loading included) to now
  double host_peak_rss_gib = 0;  // VmHWM of this process so far, GiB
};

// Measured now. Where /proc cannot be read, startup_s counts from the
// trainer library's load instead and host_peak_rss_gib is 0.
StartupStats measure_startup();

}  // namespace partune::trainer
