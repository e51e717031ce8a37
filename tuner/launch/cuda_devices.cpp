#include "tuner/launch/cuda_devices.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string_view>

#include "tuner/space/duration.h"

namespace partune {

std::optional<int> cuda_device_count(const char* nvml_library) {
  if (const char* hook = std::getenv(kCudaDeviceCountEnv)) {
    const auto n = parse_count(hook);
    if (!n || *n > 1 << 20) return std::nullopt;  // "none", or anything that is no count
    return static_cast<int>(*n);
  }
  void* lib = ::dlopen(nvml_library, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return std::nullopt;
  // NVML's C API: each returns 0 (NVML_SUCCESS) or an error code.
  using Init = int (*)();
  using Count = int (*)(unsigned int*);
  using Shutdown = int (*)();
  auto init = reinterpret_cast<Init>(::dlsym(lib, "nvmlInit_v2"));
  auto count = reinterpret_cast<Count>(::dlsym(lib, "nvmlDeviceGetCount_v2"));
  auto shutdown = reinterpret_cast<Shutdown>(::dlsym(lib, "nvmlShutdown"));
  std::optional<int> out;
  if (init && count && shutdown && init() == 0) {
    unsigned int n = 0;
    if (count(&n) == 0 && n <= (1u << 20)) out = static_cast<int>(n);
    shutdown();
  }
  ::dlclose(lib);
  return out;
}

}  // namespace partune
