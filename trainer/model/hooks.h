// Where a parallelism pass plugs into the model. The model calls these hooks
// and never calls a collective itself (trainer/parallel implements them over
// c10d). Default-constructed hooks mean one process: identity, local experts.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

namespace partune::trainer {

using TensorFn = std::function<torch::Tensor(const torch::Tensor&)>;

// Tensor parallelism around a column-parallel -> row-parallel pair (attention
// wq/wk/wv -> wo, FFN w1/w3 -> w2). Empty functions are the identity.
struct TensorParallelHooks {
  TensorFn enter_region;  // on the region's input: identity forward, all-reduce of grads backward
  TensorFn exit_region;   // on the row-parallel output: all-reduce forward, identity backward
};

// Called at the start and end of a module's forward (also when an activation-
// checkpointed block is recomputed in backward). FSDP uses them to all-gather
// a block's parameters before use and drop them after. Empty: nothing.
struct ForwardHooks {
  std::function<void()> before;
  std::function<void()> after;
};

// Moves routed token rows to the ranks that own their experts and back.
// The MoE layer sorts its (token, expert) rows by global expert id first.
class ExpertDispatcher {
 public:
  virtual ~ExpertDispatcher() = default;
  // rows: [sum(counts), dim], grouped by global expert id; counts[e] rows for
  // global expert e (size num_experts). Returns the rows this rank's local
  // experts must process, grouped by local expert, and their per-local-expert
  // counts. Must be differentiable (autograd flows back through it).
  virtual std::pair<torch::Tensor, std::vector<int64_t>> dispatch(const torch::Tensor& rows,
                                                                  const std::vector<int64_t>& counts) = 0;
  // Inverse of the last dispatch: expert outputs back in the original row order.
  virtual torch::Tensor combine(const torch::Tensor& expert_out) = 0;
  // Index of this rank's first expert and how many it owns.
  virtual int64_t first_local_expert() const = 0;
  virtual int64_t num_local_experts() const = 0;
};

}  // namespace partune::trainer
