// Exact live-byte accounting on the CPU: a c10 CPU allocator that wraps the
// default one and counts the bytes of every tensor alive, and their peak.
// VmHWM (device_memory.h) counts everything the process touched and cannot
// be reset; this counts what the tensors hold, as the CUDA caching
// allocator's "allocated" statistics do, so a CPU run can compare what two
// runs keep byte for byte (the emulated rank against a real one).
//
// Installed by the trainer when PARTUNE_CPU_MEMORY=allocated
// (docs/trainer.md); then the CPU step line's memory is the peak allocated
// bytes since the last log, not VmHWM.
#pragma once
#include <cstdint>

namespace partune::trainer {

// Installs the counting allocator (once; later calls do nothing). Tensors
// allocated before it are not counted when they are freed either.
void install_counting_cpu_allocator();
bool counting_cpu_allocator_installed();

// Bytes of CPU tensors alive now, and the peak since the last reset.
int64_t cpu_allocated_bytes();
int64_t cpu_peak_allocated_bytes();
void reset_cpu_peak_allocated_bytes();

}  // namespace partune::trainer
