#include "trainer/parallel/expert_parallel.h"

#include <numeric>
#include <stdexcept>

#include "trainer/model/routing.h"

namespace partune::trainer {

AllToAllDispatcher::AllToAllDispatcher(GroupPtr ep_group, int64_t num_experts)
    : group_(std::move(ep_group)), num_experts_(num_experts) {
  if (!group_) throw std::invalid_argument("AllToAllDispatcher: null EP group");
  if (num_experts <= 0 || num_experts % group_->size() != 0)
    throw std::invalid_argument("AllToAllDispatcher: num_experts " + std::to_string(num_experts) +
                                " is not divisible by EP " + std::to_string(group_->size()));
  local_experts_ = num_experts / group_->size();
}

std::pair<torch::Tensor, std::vector<int64_t>> AllToAllDispatcher::dispatch(const torch::Tensor& rows,
                                                                            const std::vector<int64_t>& counts) {
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == num_experts_, "dispatch: ", counts.size(), " counts for ",
              num_experts_, " experts");
  TORCH_CHECK(std::accumulate(counts.begin(), counts.end(), int64_t{0}) == rows.size(0), "dispatch: counts sum to ",
              std::accumulate(counts.begin(), counts.end(), int64_t{0}), " but rows has ", rows.size(0));
  const int ep = group_->size();
  const int64_t L = local_experts_;
  // received[s * L + l]: rows from rank s for my local expert l.
  const auto received = all_to_all_counts(counts, L, group_);

  input_splits_.assign(ep, 0);
  output_splits_.assign(ep, 0);
  for (int r = 0; r < ep; ++r)
    for (int64_t l = 0; l < L; ++l) {
      input_splits_[r] += counts[r * L + l];
      output_splits_[r] += received[r * L + l];
    }
  auto arrived = all_to_all(rows, output_splits_, input_splits_, group_);

  // Arrival order is (source rank, local expert); the experts want (local
  // expert, source rank). order[i] = arrival position of expert-major row i.
  std::vector<int64_t> start(ep * L + 1, 0);
  for (int64_t i = 0; i < ep * L; ++i) start[i + 1] = start[i] + received[i];
  std::vector<int64_t> order;
  order.reserve(start.back());
  std::vector<int64_t> local_counts(L, 0);
  for (int64_t l = 0; l < L; ++l)
    for (int s = 0; s < ep; ++s) {
      const int64_t k = s * L + l;
      for (int64_t i = start[k]; i < start[k + 1]; ++i) order.push_back(i);
      local_counts[l] += received[k];
    }
  pending_ = true;
  if (ep == 1) {  // already expert-major
    order_ = inverse_order_ = torch::Tensor();
    return {arrived, local_counts};
  }
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[order[i]] = static_cast<int64_t>(i);
  inverse_order_ = torch::tensor(inverse, torch::kInt64).to(arrived.device());
  order_ = torch::tensor(order, torch::kInt64).to(arrived.device());
  return {permute_rows(arrived, order_, inverse_order_), local_counts};
}

torch::Tensor AllToAllDispatcher::combine(const torch::Tensor& expert_out) {
  TORCH_CHECK(pending_, "combine without a dispatch");
  pending_ = false;
  auto arrival = inverse_order_.defined() ? permute_rows(expert_out, inverse_order_, order_) : expert_out;
  return all_to_all(arrival, input_splits_, output_splits_, group_);
}

torch::Tensor local_shard(const torch::Tensor& full, int64_t dim, const Group& group) {
  TORCH_CHECK(full.size(dim) % group.size() == 0, "local_shard: size ", full.size(dim), " of dim ", dim,
              " is not divisible by group size ", group.size());
  return full.chunk(group.size(), dim)[group.rank].contiguous();
}

TensorParallelHooks tensor_parallel_hooks(const GroupPtr& tp_group) {
  if (!tp_group || tp_group->size() == 1) return {};
  return {[g = tp_group](const torch::Tensor& x) { return grad_all_reduce(x, g); },
          [g = tp_group](const torch::Tensor& x) { return all_reduce_sum(x, g); }};
}

}  // namespace partune::trainer
