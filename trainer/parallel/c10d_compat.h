// The one place that knows LibTorch 1.13 (Debian, CPU) from 2.x (pip, GPU).
// In 1.13 a backend is a c10d::ProcessGroup; in 2.x a c10d::Backend. The
// collectives used here exist in both; where Gloo lacks one (reduce-scatter,
// and the flat all-gather in 1.13) it is composed from ones it has.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

// The c10d headers guard their backends behind these (the Python build
// defines them; a C++ consumer must). Gloo's own headers come from
// libgloo-dev; pip's torch does not ship them, so a GPU build may lack Gloo.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if __has_include(<gloo/algorithm.h>)
#define PARTUNE_HAVE_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#ifdef PARTUNE_WITH_CUDA
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <string>
#include <vector>

namespace partune::trainer::c10d_compat {

#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif
using BackendPtr = c10::intrusive_ptr<Backend>;

inline bool is_gloo(const Backend& pg) { return pg.getBackendName() == "gloo"; }

inline void all_reduce_sum(Backend& pg, at::Tensor& t) {
  std::vector<at::Tensor> ts{t};
  pg.allreduce(ts)->wait();
}

inline void all_reduce_max(Backend& pg, at::Tensor& t) {
  std::vector<at::Tensor> ts{t};
  c10d::AllreduceOptions max;
  max.reduceOp = c10d::ReduceOp::MAX;
  pg.allreduce(ts, max)->wait();
}

// out: [size * n, ...], in: [n, ...], both contiguous.
inline void all_gather_into(Backend& pg, at::Tensor& out, at::Tensor& in) {
  if (is_gloo(pg)) {
    std::vector<std::vector<at::Tensor>> outs(1);
    for (auto& chunk : out.chunk(pg.getSize(), 0)) outs[0].push_back(chunk);
    std::vector<at::Tensor> ins{in};
    pg.allgather(outs, ins)->wait();
    return;
  }
  pg._allgather_base(out, in)->wait();
}

// out: [n, ...], in: [size * n, ...] contiguous; sum over ranks, keep this rank's chunk.
inline void reduce_scatter_into(Backend& pg, at::Tensor& out, at::Tensor& in) {
  if (is_gloo(pg)) {
    std::vector<at::Tensor> ts{in.clone()};
    pg.allreduce(ts)->wait();
    out.copy_(ts[0].chunk(pg.getSize(), 0)[pg.getRank()]);
    return;
  }
  pg._reduce_scatter_base(out, in)->wait();
}

inline void all_to_all(Backend& pg, at::Tensor& out, at::Tensor& in, std::vector<int64_t> out_splits,
                       std::vector<int64_t> in_splits) {
  pg.alltoall_base(out, in, out_splits, in_splits)->wait();
}

inline void barrier(Backend& pg) { pg.barrier()->wait(); }

}  // namespace partune::trainer::c10d_compat
