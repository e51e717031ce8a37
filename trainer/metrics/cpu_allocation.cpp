#include "trainer/metrics/cpu_allocation.h"

#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

#include <atomic>
#include <cstring>
#include <utility>

namespace partune::trainer {

namespace {

std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_installed{false};

// What a counted allocation carries to its deleter: the inner allocation
// (freed with it) and its size.
struct Counted {
  c10::DataPtr inner;
  int64_t bytes;
};

void release(void* ctx) {
  auto* c = static_cast<Counted*>(ctx);
  g_live.fetch_sub(c->bytes, std::memory_order_relaxed);
  delete c;  // frees the inner allocation through its own deleter
}

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return counted(n); }
  void copy_data(void* dest, const void* src, size_t count) const override { std::memcpy(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override { return counted(n); }
#endif

 private:
  c10::DataPtr counted(size_t n) const {
    c10::DataPtr inner = inner_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    const auto bytes = static_cast<int64_t>(n);
    const int64_t live = g_live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    int64_t peak = g_peak.load(std::memory_order_relaxed);
    while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
    }
    return {data, new Counted{std::move(inner), bytes}, &release, device};
  }
  c10::Allocator* inner_;
};

}  // namespace

void install_counting_cpu_allocator() {
  if (g_installed.exchange(true)) return;
  // Never freed: tensors it allocated may outlive every other static.
  static auto* counting = new CountingAllocator(c10::GetCPUAllocator());
  c10::SetCPUAllocator(counting, /*priority=*/100);
}

bool counting_cpu_allocator_installed() { return g_installed.load(); }

int64_t cpu_allocated_bytes() { return g_live.load(std::memory_order_relaxed); }
int64_t cpu_peak_allocated_bytes() { return g_peak.load(std::memory_order_relaxed); }
void reset_cpu_peak_allocated_bytes() { g_peak.store(g_live.load(std::memory_order_relaxed)); }

}  // namespace partune::trainer
