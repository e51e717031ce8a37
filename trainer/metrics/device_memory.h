// Device memory statistics for the step line, as torchtitan's
// DeviceMemoryMonitor reads them: peak *reserved* bytes of the caching
// allocator since the last reset, the allocator's retry and OOM counters, and
// the device's name and capacity.
//
// On the CPU there is no caching allocator: memory is the process's peak
// resident set size (VmHWM in /proc/self/status). The kernel cannot reset
// VmHWM, so on the CPU the number is the peak *so far*, not since the last
// log line. Its capacity is a budget: $PARTUNE_DEVICE_MEMORY_GIB when set,
// else MemTotal from /proc/meminfo. Retries and OOMs are always 0 there.
//
// With PARTUNE_CPU_MEMORY=allocated the CPU's memory is instead the peak
// bytes of live CPU tensors since the last reset (cpu_allocation.h): exact
// and resettable, for comparing what runs keep.
//
// This is the one file with CUDA calls (under PARTUNE_WITH_CUDA).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace partune::trainer {

struct DeviceMemStats {
  double max_reserved_bytes = 0;
  int64_t num_alloc_retries = 0;
  int64_t num_ooms = 0;
};

class DeviceMemoryMonitor {
 public:
  explicit DeviceMemoryMonitor(torch::Device device);

  const std::string& device_type() const { return type_; }  // "cuda" or "cpu"
  const std::string& device_name() const { return name_; }  // "NVIDIA H100 80GB HBM3", or the CPU model
  double capacity_bytes() const { return capacity_; }
  const std::string& capacity_source() const {
    return capacity_source_;
  }  // "device", "PARTUNE_DEVICE_MEMORY_GIB", "MemTotal"

  DeviceMemStats peak_stats() const;
  // Bytes of live tensors now (CUDA: the caching allocator's allocated
  // bytes; CPU: the counting allocator's), or -1 where not counted (CPU
  // without PARTUNE_CPU_MEMORY=allocated).
  double allocated_bytes() const;
  void reset_peak_stats();
  // Hands the caching allocator's unused blocks back to the device (after the
  // parallel passes freed the full model), so reserved memory reflects training.
  void release_cached_memory();

  static double to_gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }
  double to_pct(double bytes) const { return 100.0 * bytes / capacity_; }

 private:
  torch::Device device_;
  std::string type_, name_, capacity_source_;
  double capacity_ = 1;
  bool cpu_counted_ = false;  // PARTUNE_CPU_MEMORY=allocated
};

// Peak resident set size of this process in bytes (VmHWM); 0 when unknown.
double process_peak_rss_bytes();

}  // namespace partune::trainer
