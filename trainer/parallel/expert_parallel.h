// Expert parallelism (ExpertDispatcher over an EP group) and tensor
// parallelism (TensorParallelHooks over a TP group), as torchtitan v0.2.2's
// ExpertParallel and TP plans do them.
#pragma once
#include <utility>
#include <vector>

#include "trainer/model/hooks.h"
#include "trainer/parallel/collectives.h"

namespace partune::trainer {

// The experts are split evenly over the EP group: group rank r owns experts
// [r * L, (r + 1) * L), L = num_experts / EP.
//
// dispatch: exchange per-expert counts (all-to-all), send each rank the rows
// of its experts (autograd all-to-all with per-rank splits), then reorder the
// received rows - grouped by source rank, then local expert - to local-expert
// major. combine undoes the reorder and sends the rows back. One dispatch,
// then one combine, per MoE layer call; an activation-checkpoint recompute
// repeats both.
class AllToAllDispatcher : public ExpertDispatcher {
 public:
  AllToAllDispatcher(GroupPtr ep_group, int64_t num_experts);

  std::pair<torch::Tensor, std::vector<int64_t>> dispatch(const torch::Tensor& rows,
                                                          const std::vector<int64_t>& counts) override;
  torch::Tensor combine(const torch::Tensor& expert_out) override;
  int64_t first_local_expert() const override { return group_->rank * local_experts_; }
  int64_t num_local_experts() const override { return local_experts_; }

 private:
  GroupPtr group_;
  int64_t num_experts_;
  int64_t local_experts_;
  // From the last dispatch, for combine.
  std::vector<int64_t> input_splits_;   // rows sent to each rank
  std::vector<int64_t> output_splits_;  // rows received from each rank
  torch::Tensor order_;                 // expert-major row i is arrival row order_[i]
  torch::Tensor inverse_order_;         // arrival row j is expert-major row inverse_order_[j]
  bool pending_ = false;
};

// Slice `full` along `dim` into the group's equal parts; returns this rank's
// (a copy, contiguous). For loading column/row-parallel weights.
torch::Tensor local_shard(const torch::Tensor& full, int64_t dim, const Group& group);

// Hooks for a column-parallel -> row-parallel pair on the TP group: enter =
// grad_all_reduce, exit = all_reduce_sum. Empty hooks on a size-1 group.
TensorParallelHooks tensor_parallel_hooks(const GroupPtr& tp_group);

}  // namespace partune::trainer
