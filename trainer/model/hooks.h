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

// Loss parallel (torchtitan's default under TP): the output weight holds
// vocabulary rows [vocab_start, vocab_start + rows) on this TP rank, so each
// rank computes the logits of its slice of the vocabulary only, and the loss
// combines the slices through two reductions over TP per row (the maximum
// logit and the sum of exponentials) and one of the label's logit.
// enter_region on the hidden states sums their partial gradients over TP.
// Default-constructed: the whole vocabulary on this rank.
struct LossParallelHooks {
  int64_t vocab_start = 0;
  TensorFn max_over_tp;   // elementwise maximum over TP (no autograd)
  TensorFn sum_over_tp;   // elementwise sum over TP (no autograd)
  TensorFn enter_region;  // identity forward, gradient all-reduce backward
  bool active() const { return static_cast<bool>(sum_over_tp); }
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
