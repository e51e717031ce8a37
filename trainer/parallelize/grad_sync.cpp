// Gradient synchronisation and clipping after the last microbatch's backward
// (ParallelModelState's step support, parallelize.h).
#include <unordered_set>

#include "trainer/parallel/collectives.h"
#include "trainer/parallelize/fsdp.h"
#include "trainer/parallelize/parallelize.h"

namespace partune::trainer {

namespace {

void sum_grads(const std::vector<torch::Tensor>& grads, const GroupPtr& group) {
  if (grads.empty() || group->size() == 1) return;
  std::vector<torch::Tensor> flat;
  for (const auto& g : grads) flat.push_back(g.reshape({-1}).to(torch::kFloat32));
  auto buf = torch::cat(flat);
  c10d_compat::all_reduce_sum(*group->backend, buf);
  int64_t offset = 0;
  for (const auto& g : grads) {
    g.copy_(buf.narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
}

}  // namespace

void ParallelModelState::finish_gradients(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> partial;
  for (const auto& pg : partial_grads)
    if (pg.param.grad().defined()) partial.push_back(pg.param.grad());
  if (!partial.empty()) sum_grads(partial, partial_grads.front().group);  // all partial sums are over TP
  std::vector<torch::Tensor> all;
  for (const auto& p : params)
    if (p.grad().defined()) all.push_back(p.grad());
  sum_grads(all, groups.dp_replicate);
  if (fsdp) fsdp->drop_kept();
}

torch::Tensor ParallelModelState::clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) const {
  const torch::Tensor total = grad_norm(params);
  clip_gradients_to(params, total, max_norm);
  return total;
}

torch::Tensor ParallelModelState::grad_norm(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  const double T = groups.tp->size(), R = groups.dp_replicate->size();
  std::unordered_set<const c10::TensorImpl*> distinct_over_tp;
  for (const auto& p : tp_sharded) distinct_over_tp.insert(p.unsafeGetTensorImpl());
  for (const auto& p : expert_params) distinct_over_tp.insert(p.unsafeGetTensorImpl());
  // Each element is held by `copies` ranks: count it once. Per-tensor norms
  // in one multi-tensor pass over the fp32 gradients (a float64 copy of
  // every gradient cost more than the norm itself); their squares summed in
  // float64.
  std::vector<torch::Tensor> once, per_tp;  // held by R ranks / by R * T ranks
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    (distinct_over_tp.count(p.unsafeGetTensorImpl()) ? once : per_tp).push_back(p.grad());
  }
  auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
  torch::Tensor sumsq = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  for (auto [grads, copies] : {std::pair{&once, R}, std::pair{&per_tp, R * T}}) {
    if (grads->empty()) continue;
    sumsq = sumsq + torch::stack(at::_foreach_norm(*grads, 2)).to(torch::kFloat64).pow(2).sum() / copies;
  }
  if (world->size() > 1) {
    auto buf = sumsq.reshape({1}).contiguous();
    c10d_compat::all_reduce_sum(*world->backend, buf);
    sumsq = buf.reshape({});
  }
  return sumsq.sqrt().to(torch::kFloat32);
}

void clip_gradients_to(const std::vector<torch::Tensor>& params, const torch::Tensor& total, double max_norm) {
  torch::NoGradGuard no_grad;
  const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().dtype()));
}

torch::Tensor clip_divisor(const torch::Tensor& total, double max_norm) {
  torch::NoGradGuard no_grad;
  return ((total.to(torch::kFloat32) + 1e-6) / max_norm).clamp_min(1.0);
}

torch::Tensor ParallelModelState::all_reduce_expert_counts(const torch::Tensor& counts) const {
  torch::NoGradGuard no_grad;
  auto c = all_reduce_sum(counts.contiguous(), groups.loss);
  if (moe_tokens_split_over_tp) c = all_reduce_sum(c, groups.tp);
  return c;
}

}  // namespace partune::trainer
