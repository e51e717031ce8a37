#include "trainer/metrics/startup.h"

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "trainer/metrics/device_memory.h"

namespace partune::trainer {

namespace {

// The fallback origin: this library's static initialisation.
const auto kLoaded = std::chrono::steady_clock::now();

// Field 22 of /proc/self/stat: the start time in clock ticks since boot
// (the kernel's boot-time clock, so it compares with CLOCK_BOOTTIME). The
// command name (field 2) may hold spaces: fields are counted after its ')'.
bool process_start_since_boot(double* seconds) {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return false;
  const long ticks = sysconf(_SC_CLK_TCK);
  if (ticks <= 0) return false;
  *seconds = std::stod(field) / static_cast<double>(ticks);
  return true;
}

}  // namespace

StartupStats measure_startup() {
  StartupStats s;
  double start = 0;
  timespec now{};
  if (process_start_since_boot(&start) && clock_gettime(CLOCK_BOOTTIME, &now) == 0) {
    s.startup_s = static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec) - start;
  } else {
    s.startup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - kLoaded).count();
  }
  s.host_peak_rss_gib = DeviceMemoryMonitor::to_gib(process_peak_rss_bytes());
  return s;
}

}  // namespace partune::trainer
