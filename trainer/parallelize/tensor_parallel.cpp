// apply_tensor_parallel (parallelize.h): attention heads and the dense FFN's
// hidden dim split over TP, Megatron-style.
#include <tuple>

#include "trainer/parallel/expert_parallel.h"
#include "trainer/parallelize/pass_support.h"

namespace partune::trainer {

using passes::copy_param;
using passes::divide;
using passes::param_options;
using passes::view_of;

void apply_tensor_parallel(Qwen3Model& model, ParallelModelState& st) {
  const GroupPtr& tp = st.groups.tp;
  if (tp->size() == 1) return;
  const int64_t T = tp->size();
  torch::NoGradGuard no_grad;
  const int64_t r = tp->rank;
  for (auto& block : model->layers()) {
    const std::string pre = "layers." + std::to_string(block->layer_id()) + ".";
    auto old = block->attention;
    for (auto [n, w, dim] : {std::tuple{"wq", &old->wq, 0}, std::tuple{"wk", &old->wk, 0},
                             std::tuple{"wv", &old->wv, 0}, std::tuple{"wo", &old->wo, 1}}) {
      const std::string name = pre + "attention." + n + ".weight";
      st.views[name] = view_of(st, name, (*w)->weight.sizes()).chunk(dim, T, r);
    }
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
    for (auto [n, w, dim] :
         {std::tuple{"w1", &ff_old->w1, 0}, std::tuple{"w3", &ff_old->w3, 0}, std::tuple{"w2", &ff_old->w2, 1}}) {
      const std::string name = pre + "feed_forward." + n + ".weight";
      st.views[name] = view_of(st, name, (*w)->weight.sizes()).chunk(dim, T, r);
    }
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

}  // namespace partune::trainer
