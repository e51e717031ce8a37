#include "trainer/parallelize/parallelize.h"

#include <numeric>
#include <stdexcept>
#include <unordered_set>

#include "trainer/parallel/collectives.h"
#include "trainer/parallel/expert_parallel.h"
#include "trainer/parallelize/fsdp.h"

namespace partune::trainer {

namespace {

torch::TensorOptions param_options(const Qwen3Model& model) {
  return torch::TensorOptions().dtype(torch::kFloat32).device(model->options().device);
}

int64_t divide(int64_t n, int64_t parts, const std::string& what) {
  if (n % parts != 0)
    throw std::invalid_argument(what + " (" + std::to_string(n) + ") is not divisible by " + std::to_string(parts));
  return n / parts;
}

void copy_param(torch::Tensor& dst, const torch::Tensor& src) {
  TORCH_CHECK(dst.sizes() == src.sizes(), "parallelize: shard shape ", src.sizes(), " != module shape ", dst.sizes());
  dst.copy_(src);
}

// ETP = 1 with TP > 1: the TP ranks hold the same tokens; each routes 1/TP of
// the rows and the slices are reassembled by an all-reduce of disjoint parts.
TensorParallelHooks token_split_hooks(const GroupPtr& tp) {
  auto shape = std::make_shared<std::vector<int64_t>>();
  TensorParallelHooks h;
  h.enter_region = [tp, shape](const torch::Tensor& x) {
    *shape = x.sizes().vec();
    auto rows = grad_all_reduce(x, tp).reshape({-1, x.size(-1)});
    const int64_t per = divide(rows.size(0), tp->size(), "MoE token rows split over TP");
    return rows.narrow(0, per * tp->rank, per);
  };
  h.exit_region = [tp, shape](const torch::Tensor& y) {
    const int64_t per = y.size(0), before = per * tp->rank, after = per * (tp->size() - 1 - tp->rank);
    auto full = torch::cat({y.new_zeros({before, y.size(1)}), y, y.new_zeros({after, y.size(1)})}, 0);
    return all_reduce_sum(full, tp).view(*shape);
  };
  return h;
}

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

bool contains(const std::vector<torch::Tensor>& v, const torch::Tensor& t) {
  for (const auto& x : v)
    if (x.unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) return true;
  return false;
}

}  // namespace

// ------------------------------------------------------------------ passes

void apply_tensor_parallel(Qwen3Model& model, ParallelModelState& st) {
  const GroupPtr& tp = st.groups.tp;
  if (tp->size() == 1) return;
  const int64_t T = tp->size();
  torch::NoGradGuard no_grad;
  for (auto& block : model->layers()) {
    auto old = block->attention;
    AttentionOptions o = old->options();
    o.n_heads = divide(o.n_heads, T, "n_heads over TP");
    o.n_kv_heads = divide(o.n_kv_heads, T, "n_kv_heads over TP");
    Attention a(o);
    copy_param(a->wq->weight, local_shard(old->wq->weight, 0, *tp));
    copy_param(a->wk->weight, local_shard(old->wk->weight, 0, *tp));
    copy_param(a->wv->weight, local_shard(old->wv->weight, 0, *tp));
    copy_param(a->wo->weight, local_shard(old->wo->weight, 1, *tp));
    if (!old->q_norm.is_empty()) {
      copy_param(a->q_norm->weight, old->q_norm->weight);
      copy_param(a->k_norm->weight, old->k_norm->weight);
    }
    block->replace_attention(a);
    block->attention_hooks = tensor_parallel_hooks(tp);
    for (auto* l : {&a->wq, &a->wk, &a->wv, &a->wo}) st.tp_sharded.push_back((*l)->weight);
    if (!a->q_norm.is_empty()) {
      // Replicated, but each rank normalises only its heads: partial gradients.
      st.partial_grads.push_back({a->q_norm->weight, tp});
      st.partial_grads.push_back({a->k_norm->weight, tp});
    }
    if (block->is_moe()) continue;
    auto ff_old = block->feed_forward;
    const int64_t hidden = divide(ff_old->w1->weight.size(0), T, "FFN hidden_dim over TP");
    FeedForward ff(model->options().flavor.dim, hidden, model->options().compute_dtype, param_options(model));
    copy_param(ff->w1->weight, local_shard(ff_old->w1->weight, 0, *tp));
    copy_param(ff->w3->weight, local_shard(ff_old->w3->weight, 0, *tp));
    copy_param(ff->w2->weight, local_shard(ff_old->w2->weight, 1, *tp));
    block->replace_feed_forward(ff);
    block->ffn_hooks = tensor_parallel_hooks(tp);
    for (auto* l : {&ff->w1, &ff->w2, &ff->w3}) st.tp_sharded.push_back((*l)->weight);
  }
}

void apply_expert_parallel(Qwen3Model& model, ParallelModelState& st) {
  if (!model->options().flavor.moe) return;
  const auto& g = st.groups;
  const int64_t T = g.tp->size(), EP = g.ep->size(), ETP = g.etp->size();
  const bool split_tokens = T > 1 && ETP == 1;  // EP borrows TP
  st.moe_tokens_split_over_tp = split_tokens;
  torch::NoGradGuard no_grad;
  for (auto& block : model->layers()) {
    if (!block->is_moe()) continue;
    if (EP > 1 || ETP > 1) {
      auto old = block->moe;
      MoEOptions o = old->options();
      o.num_local_experts = divide(o.num_experts, EP, "num_experts over EP");
      o.hidden_dim = divide(o.hidden_dim, ETP, "moe_inter_dim over ETP");
      MoE m(o);
      const int64_t first = g.ep->rank * o.num_local_experts, L = o.num_local_experts;
      auto rows = [&](const torch::Tensor& w, int64_t hidden_dim) {
        auto mine = w.narrow(0, first, L);
        return ETP > 1 ? local_shard(mine, hidden_dim, *g.etp) : mine;
      };
      copy_param(m->experts->w1, rows(old->experts->w1, 1));
      copy_param(m->experts->w3, rows(old->experts->w3, 1));
      copy_param(m->experts->w2, rows(old->experts->w2, 2));
      copy_param(m->router->gate->weight, old->router->gate->weight);
      m->expert_bias.copy_(old->expert_bias);
      m->tokens_per_expert.copy_(old->tokens_per_expert);
      if (EP > 1) m->set_dispatcher(std::make_shared<AllToAllDispatcher>(g.ep, o.num_experts));
      block->replace_moe(m);
    }
    auto& moe = block->moe;
    for (auto* w : {&moe->experts->w1, &moe->experts->w2, &moe->experts->w3}) st.expert_params.push_back(*w);
    if (T > 1) {
      block->ffn_hooks = split_tokens ? token_split_hooks(g.tp) : tensor_parallel_hooks(g.tp);
      st.partial_grads.push_back({moe->router->gate->weight, g.tp});
    }
  }
}

void apply_fsdp(Qwen3Model& model, ParallelModelState& st, const std::string& reshard_after_forward,
                torch::Dtype param_dtype) {
  if (st.groups.fsdp->size() == 1 && st.groups.efsdp->size() == 1) return;
  if (reshard_after_forward != "default" && reshard_after_forward != "always" && reshard_after_forward != "never")
    throw std::invalid_argument("fsdp_reshard_after_forward '" + reshard_after_forward +
                                "': expected default, always or never");
  auto fsdp = std::make_shared<FsdpState>();
  std::vector<torch::Tensor> covered;
  using Slots = std::vector<std::pair<std::string, torch::Tensor*>>;

  for (auto& b : model->layers()) {
    const std::string pre = "layers." + std::to_string(b->layer_id()) + ".";
    Slots slots{{pre + "attention_norm.weight", &b->attention_norm->weight},
                {pre + "ffn_norm.weight", &b->ffn_norm->weight},
                {pre + "attention.wq.weight", &b->attention->wq->weight},
                {pre + "attention.wk.weight", &b->attention->wk->weight},
                {pre + "attention.wv.weight", &b->attention->wv->weight},
                {pre + "attention.wo.weight", &b->attention->wo->weight}};
    if (!b->attention->q_norm.is_empty()) {
      slots.push_back({pre + "attention.q_norm.weight", &b->attention->q_norm->weight});
      slots.push_back({pre + "attention.k_norm.weight", &b->attention->k_norm->weight});
    }
    std::vector<GroupPtr> groups(slots.size(), st.groups.fsdp);
    if (b->is_moe()) {
      slots.push_back({pre + "moe.router.gate.weight", &b->moe->router->gate->weight});
      groups.push_back(st.groups.fsdp);
      for (auto [n, w] : {std::pair{"w1", &b->moe->experts->w1}, std::pair{"w2", &b->moe->experts->w2},
                          std::pair{"w3", &b->moe->experts->w3}}) {
        slots.push_back({pre + "moe.experts." + n, w});
        groups.push_back(st.groups.efsdp);
      }
    } else {
      for (auto [n, l] : {std::pair{"w1", &b->feed_forward->w1}, std::pair{"w2", &b->feed_forward->w2},
                          std::pair{"w3", &b->feed_forward->w3}}) {
        slots.push_back({pre + "feed_forward." + n + ".weight", &(*l)->weight});
        groups.push_back(st.groups.fsdp);
      }
    }
    for (auto& s : slots) covered.push_back(*s.second);
    // torchtitan v0.2.2 (no PP): "default" and "always" reshard every block.
    const bool reshard = reshard_after_forward != "never";
    FsdpUnit& unit = fsdp->add_unit(pre, slots, groups, reshard, param_dtype);
    b->forward_hooks.before = [&unit] { FsdpState::unshard(unit); };
    b->forward_hooks.after = [&unit] { FsdpState::reshard(unit); };
  }

  Slots root{{"tok_embeddings.weight", &model->tok_embeddings_weight()}, {"norm.weight", &model->norm->weight}};
  if (!model->output.is_empty()) root.push_back({"output.weight", &model->output->weight});
  for (auto& s : root) covered.push_back(*s.second);
  for (const auto& p : model->parameters())
    if (!contains(covered, p))
      throw std::logic_error("apply_fsdp: a model parameter of shape " + c10::str(p.sizes()) +
                             " has no FSDP slot (the model gained a parameter this pass does not know)");
  // Gathered once per forward and used by backward through the graph, so
  // resharding it only drops the slots (torchtitan keeps norm/output
  // unsharded by default to save a gather in backward; there is none here).
  FsdpUnit& unit = fsdp->add_unit("root", root, std::vector<GroupPtr>(root.size(), st.groups.fsdp),
                                  /*reshard_after_forward=*/true, param_dtype);
  model->forward_hooks.before = [&unit] { FsdpState::unshard(unit); };
  model->forward_hooks.after = [&unit] { FsdpState::reshard(unit); };
  st.fsdp = std::move(fsdp);
}

std::shared_ptr<ParallelModelState> parallelize(Qwen3Model& model, const ProcessGroups& groups, GroupPtr world,
                                                const ParallelizeOptions& options) {
  auto st = std::make_shared<ParallelModelState>();
  st->groups = groups;
  st->world = std::move(world);
  apply_tensor_parallel(model, *st);
  apply_expert_parallel(model, *st);
  apply_activation_checkpointing(model, options.ac);
  apply_compile(model, options.compile);
  apply_fsdp(model, *st, options.reshard_after_forward, options.param_dtype);
  return st;
}

// ------------------------------------------------------------------ step support

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
  const torch::Tensor total = sumsq.sqrt().to(torch::kFloat32);
  clip_gradients_to(params, total, max_norm);
  return total;
}

void clip_gradients_to(const std::vector<torch::Tensor>& params, const torch::Tensor& total, double max_norm) {
  torch::NoGradGuard no_grad;
  const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().dtype()));
}

torch::Tensor ParallelModelState::all_reduce_expert_counts(const torch::Tensor& counts) const {
  torch::NoGradGuard no_grad;
  auto c = all_reduce_sum(counts.contiguous(), groups.loss);
  if (moe_tokens_split_over_tp) c = all_reduce_sum(c, groups.tp);
  return c;
}

}  // namespace partune::trainer
