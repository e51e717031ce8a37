// How many CUDA devices this machine has, for handing each of the trials
// running at once its own (trial_slots.h) when CUDA_VISIBLE_DEVICES does not
// list them.
#pragma once
#include <optional>

namespace partune {

// The environment variable that, when set, answers cuda_device_count()
// instead of the driver: a count ("4"), or "none" for a machine without a
// driver. A test hook (a machine without GPUs can then test the counting
// paths); documented in docs/search-space.md.
inline constexpr const char* kCudaDeviceCountEnv = "PARTUNE_CUDA_DEVICE_COUNT";

// The device count the NVIDIA driver reports (NVML, loaded at run time with
// dlopen: tune links nothing of CUDA), or nullopt when it cannot tell (no
// driver: `nvml_library` does not load, or NVML fails). The hook above wins.
std::optional<int> cuda_device_count(const char* nvml_library = "libnvidia-ml.so.1");

}  // namespace partune
