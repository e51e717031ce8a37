// Collectives that autograd can differentiate through. Each is the pair a
// parallel layer needs (forward op, backward op) over one Group; on a size-1
// group each is the identity. Collectives along dim 0, tensors on the group's
// device. Gradient reductions run in float32 whatever the tensor's dtype.
#pragma once
#include <vector>

#include "trainer/parallel/distributed.h"

namespace partune::trainer {

// Forward: sum over the group. Backward: identity. (TP: row-parallel output.)
torch::Tensor all_reduce_sum(const torch::Tensor& x, const GroupPtr& group);

// Forward: identity. Backward: sum of the gradients over the group. (TP:
// input to a column-parallel region.)
torch::Tensor grad_all_reduce(const torch::Tensor& x, const GroupPtr& group);

// Forward: rows [sum(input_splits)] are cut into input_splits[i] rows for
// group rank i; returns the rows received, output_splits[i] from rank i, in
// rank order. Backward: the reverse all-to-all with the splits swapped.
torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& output_splits,
                         const std::vector<int64_t>& input_splits, const GroupPtr& group);

// Non-differentiable: the elementwise maximum over the group.
torch::Tensor all_reduce_max(const torch::Tensor& x, const GroupPtr& group);

// Non-differentiable: the sum of one integer over the group (no device
// round trip on a size-1 group).
int64_t all_reduce_sum(int64_t value, const GroupPtr& group);

// Non-differentiable: all-to-all of int64 counts, `per_rank` to each rank
// (counts.size() == per_rank * group size). Returns per_rank from each rank,
// in rank order.
std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& counts, int64_t per_rank, const GroupPtr& group);

}  // namespace partune::trainer
