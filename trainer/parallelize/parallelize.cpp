#include "trainer/parallelize/parallelize.h"

#include <stdexcept>
#include <tuple>

#include "trainer/parallel/collectives.h"
#include "trainer/parallel/expert_parallel.h"
#include "trainer/parallelize/fsdp.h"
#include "trainer/parallelize/pass_support.h"

namespace partune::trainer {

using passes::copy_param;
using passes::divide;
using passes::param_options;
using passes::view_of;

namespace {

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

bool contains(const std::vector<torch::Tensor>& v, const torch::Tensor& t) {
  for (const auto& x : v)
    if (x.unsafeGetTensorImpl() == t.unsafeGetTensorImpl()) return true;
  return false;
}

}  // namespace

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
      const std::string pre = "layers." + std::to_string(block->layer_id()) + ".moe.experts.";
      auto rows = [&](const torch::Tensor& w, const char* n, int64_t hidden_dim) {
        ShardView v = view_of(st, pre + n, w.sizes()).chunk(0, EP, g.ep->rank);
        st.views[pre + n] = ETP > 1 ? v.chunk(hidden_dim, ETP, g.etp->rank) : v;
        auto mine = w.narrow(0, first, L);
        return ETP > 1 ? local_shard(mine, hidden_dim, *g.etp) : mine;
      };
      copy_param(m->experts->w1, rows(old->experts->w1, "w1", 1));
      copy_param(m->experts->w3, rows(old->experts->w3, "w3", 1));
      copy_param(m->experts->w2, rows(old->experts->w2, "w2", 2));
      copy_param(m->router->gate->weight, old->router->gate->weight);
      copy_param(m->expert_bias, old->expert_bias);
      copy_param(m->tokens_per_expert, old->tokens_per_expert);
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
  // Each flat shard holds elements [per_rank * rank, per_rank * (rank + 1))
  // of its parameter's local (TP/EP-cut) part.
  for (const auto& u : fsdp->units())
    for (const auto& p : u->params) {
      const int64_t per_rank = p->shard.numel();
      st.views[p->name] = view_of(st, p->name, p->shape).flat(per_rank * p->group->rank, per_rank);
    }
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
  apply_loss_parallel(model, *st, options.loss_parallel);
  apply_fsdp(model, *st, options.reshard_after_forward, options.param_dtype);
  return st;
}

}  // namespace partune::trainer
