#include "trainer/metrics/device_memory.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "trainer/metrics/cpu_allocation.h"

#ifdef PARTUNE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace partune::trainer {

namespace {

// "VmHWM:    123456 kB" -> bytes; 0 when the field is missing.
double proc_kib_field(const char* file, const std::string& field) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream s(line.substr(field.size() + 1));
    double kib = 0;
    s >> kib;
    return kib * 1024.0;
  }
  return 0;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      auto v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(' '));
      return v;
    }
  }
  return "CPU";
}

}  // namespace

double process_peak_rss_bytes() { return proc_kib_field("/proc/self/status", "VmHWM"); }

DeviceMemoryMonitor::DeviceMemoryMonitor(torch::Device device) : device_(device) {
  if (device.is_cuda()) {
#ifdef PARTUNE_WITH_CUDA
    type_ = "cuda";
    const auto* props = at::cuda::getDeviceProperties(device.has_index() ? device.index() : 0);
    name_ = props->name;
    capacity_ = static_cast<double>(props->totalGlobalMem);
    capacity_source_ = "device";
    // The caching allocator keeps per-device state only after its first
    // allocation there; its stats calls refuse ("Invalid device argument")
    // until then.
    (void)torch::empty({1}, torch::TensorOptions().device(device));
    reset_peak_stats();
    return;
#else
    throw std::runtime_error("this trainer was built without CUDA support");
#endif
  }
  type_ = "cpu";
  name_ = cpu_model_name();
  if (const char* env = std::getenv("PARTUNE_CPU_MEMORY"); env != nullptr && *env != '\0') {
    if (std::string(env) != "allocated" && std::string(env) != "rss")
      throw InputError("PARTUNE_CPU_MEMORY='" + std::string(env) + "': must be allocated or rss");
    cpu_counted_ = std::string(env) == "allocated";
    if (cpu_counted_) install_counting_cpu_allocator();
  }
  if (const char* env = std::getenv("PARTUNE_DEVICE_MEMORY_GIB"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const double gib = std::strtod(env, &end);
    if (end == env || *end != '\0' || !(gib > 0))
      throw InputError("PARTUNE_DEVICE_MEMORY_GIB='" + std::string(env) + "': must be a positive number of GiB");
    capacity_ = gib * 1024.0 * 1024.0 * 1024.0;
    capacity_source_ = "PARTUNE_DEVICE_MEMORY_GIB";
  } else {
    capacity_ = proc_kib_field("/proc/meminfo", "MemTotal");
    capacity_source_ = "MemTotal";
    if (capacity_ <= 0) capacity_ = 1;
  }
}

DeviceMemStats DeviceMemoryMonitor::peak_stats() const {
  DeviceMemStats s;
#ifdef PARTUNE_WITH_CUDA
  if (device_.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.has_index() ? device_.index() : 0);
    s.max_reserved_bytes = static_cast<double>(stats.reserved_bytes[0].peak);  // [0]: all pools (aggregate)
    s.num_alloc_retries = stats.num_alloc_retries;
    s.num_ooms = stats.num_ooms;
    return s;
  }
#endif
  s.max_reserved_bytes = cpu_counted_ ? static_cast<double>(cpu_peak_allocated_bytes()) : process_peak_rss_bytes();
  return s;
}

double DeviceMemoryMonitor::allocated_bytes() const {
#ifdef PARTUNE_WITH_CUDA
  if (device_.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device_.has_index() ? device_.index() : 0);
    return static_cast<double>(stats.allocated_bytes[0].current);
  }
#endif
  return cpu_counted_ ? static_cast<double>(cpu_allocated_bytes()) : -1.0;
}

void DeviceMemoryMonitor::reset_peak_stats() {
#ifdef PARTUNE_WITH_CUDA
  if (device_.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device_.has_index() ? device_.index() : 0);
#endif
  // CPU: VmHWM cannot be reset (see the header); the counted peak can.
  if (cpu_counted_) reset_cpu_peak_allocated_bytes();
}

void DeviceMemoryMonitor::release_cached_memory() {
#ifdef PARTUNE_WITH_CUDA
  if (device_.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

}  // namespace partune::trainer
