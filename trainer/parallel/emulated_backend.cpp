#include "trainer/parallel/emulated_backend.h"

#include <algorithm>
#include <numeric>

namespace partune::trainer {

namespace {

// A collective that finished when it was issued (the copies it made are
// ordered on the device's stream like any other kernel).
class DoneWork : public c10d::Work {
 public:
  bool isCompleted() override { return true; }
  bool wait(std::chrono::milliseconds /*timeout*/) override { return true; }
};

c10::intrusive_ptr<c10d::Work> done() { return c10::make_intrusive<DoneWork>(); }

class EmulatedBackend : public c10d_compat::Backend {
 public:
  EmulatedBackend(int rank, int size) : c10d_compat::Backend(rank, size) {}

  const std::string getBackendName() const override { return kEmulatedBackendName; }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>&, const c10d::BroadcastOptions&) override {
    return done();
  }
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>&, const c10d::AllreduceOptions&) override {
    return done();
  }
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions&) override { return done(); }

  // out [size * n, ...] from in [n, ...]: every rank's slot holds this rank's input.
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& out, at::Tensor& in,
                                                 const c10d::AllgatherOptions&) override {
    TORCH_CHECK(out.numel() == in.numel() * getSize(), "emulated all-gather: output has ", out.numel(),
                " elements, expected ", in.numel(), " x ", getSize());
    out.view({getSize(), -1}).copy_(in.reshape({1, -1}).expand({getSize(), in.numel()}));
    return done();
  }

  // out [n, ...] from in [size * n, ...]: this rank's chunk, unsummed.
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(at::Tensor& out, at::Tensor& in,
                                                      const c10d::ReduceScatterOptions&) override {
    TORCH_CHECK(in.numel() == out.numel() * getSize(), "emulated reduce-scatter: input has ", in.numel(),
                " elements, expected ", out.numel(), " x ", getSize());
    out.view({-1}).copy_(in.reshape({getSize(), -1})[getRank()]);
    return done();
  }

  // The output has the rows its splits ask for: the input's rows in order
  // (under balanced routing both sides hold the same number), any rows past
  // the input's zero.
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& out, at::Tensor& in, std::vector<int64_t>& out_splits,
                                               std::vector<int64_t>& in_splits, const c10d::AllToAllOptions&) override {
    (void)out_splits;
    (void)in_splits;
    if (out.numel() == 0) return done();
    const int64_t rows_out = out.size(0), rows_in = in.numel() == 0 ? 0 : in.size(0);
    const int64_t n = std::min(rows_out, rows_in);
    if (n > 0) out.narrow(0, 0, n).copy_(in.narrow(0, 0, n));
    if (n < rows_out) out.narrow(0, n, rows_out - n).zero_();
    return done();
  }
};

}  // namespace

c10d_compat::BackendPtr make_emulated_backend(int rank, int size) {
  return c10::make_intrusive<EmulatedBackend>(rank, size);
}

}  // namespace partune::trainer
