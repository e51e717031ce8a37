#include "trainer/model/model.h"

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "trainer/model/chunked_loss.h"
#include "trainer/model/fused_elementwise.h"
#include "trainer/model/torch_compat.h"

namespace partune::trainer {

namespace {

torch::Tensor run_hook(const TensorFn& hook, const torch::Tensor& t) { return hook ? hook(t) : t; }

}  // namespace

// ---------------------------------------------------------------- modules

torch::TensorOptions param_options_for(const ModelOptions& o) {
  return torch::TensorOptions()
      .dtype(torch::kFloat32)
      .device(o.without_storage ? torch::Device(torch::kMeta) : o.device);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const torch::TensorOptions& param_options) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, param_options));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return fused ? rms_norm_compiled(x, weight, eps) : rms_norm(x, weight, eps);
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, const torch::TensorOptions& param_options) {
  weight = register_parameter("weight", torch::zeros({out_features, in_features}, param_options));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x, torch::Dtype compute_dtype) {
  return torch::linear(cast(x, compute_dtype), cast(weight, compute_dtype));
}

torch::Tensor LinearImpl::forward_saved(const torch::Tensor& x, torch::Dtype compute_dtype, bool may_save) {
  return saved_matmul(cast(x, compute_dtype), cast(weight, compute_dtype), may_save);
}

AttentionImpl::AttentionImpl(const AttentionOptions& o) : opts_(o) {
  TORCH_CHECK(o.n_heads > 0 && o.n_kv_heads > 0 && o.n_heads % o.n_kv_heads == 0, "attention: local heads ", o.n_heads,
              " must be a positive multiple of local kv heads ", o.n_kv_heads);
  const auto& p = o.param_options;
  wq = register_module("wq", Linear(o.dim, o.n_heads * o.head_dim, p));
  wk = register_module("wk", Linear(o.dim, o.n_kv_heads * o.head_dim, p));
  wv = register_module("wv", Linear(o.dim, o.n_kv_heads * o.head_dim, p));
  wo = register_module("wo", Linear(o.n_heads * o.head_dim, o.dim, p));
  if (o.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(o.head_dim, o.norm_eps, p));
    k_norm = register_module("k_norm", RMSNorm(o.head_dim, o.norm_eps, p));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& rope_cache) {
  const int64_t b = x.size(0), s = x.size(1), hd = opts_.head_dim;
  const auto dt = opts_.compute_dtype;
  // Counted for per-op AC, never kept: the kept attention holds q, k, v.
  auto q = wq->forward_saved(x, dt, /*may_save=*/false).view({b, s, -1, hd});
  auto k = wk->forward_saved(x, dt, /*may_save=*/false).view({b, s, -1, hd});
  auto v = wv->forward_saved(x, dt, /*may_save=*/false).view({b, s, -1, hd});
  if (!q_norm.is_empty()) {
    q = q_norm(q);
    k = k_norm(k);
  }
  const auto rope = fused ? rotary_emb : apply_rotary_emb;
  q = rope(q, rope_cache).transpose(1, 2);  // [B, H, S, hd]
  k = rope(k, rope_cache).transpose(1, 2);
  v = v.transpose(1, 2);
  const bool fast = opts_.fast_paths && sdpa_available() && q.is_cuda();
  auto o = saved_op(
      [fast](const std::vector<torch::Tensor>& in) {
        return fast ? causal_attention_sdpa(in[0], in[1], in[2]) : causal_attention_reference(in[0], in[1], in[2]);
      },
      {q, k, v});
  return wo->forward_saved(o.transpose(1, 2).contiguous().view({b, s, -1}), dt);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden_dim, torch::Dtype compute_dtype,
                                 const torch::TensorOptions& param_options)
    : compute_dtype_(compute_dtype) {
  w1 = register_module("w1", Linear(dim, hidden_dim, param_options));
  w2 = register_module("w2", Linear(hidden_dim, dim, param_options));
  w3 = register_module("w3", Linear(dim, hidden_dim, param_options));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  auto a = w1->forward_saved(x, compute_dtype_);
  auto b = w3->forward_saved(x, compute_dtype_);
  return w2->forward_saved(fused ? swiglu(a, b) : swiglu_reference(a, b), compute_dtype_);
}

std::pair<torch::Tensor, std::vector<int64_t>> LocalDispatcher::dispatch(const torch::Tensor& rows,
                                                                         const std::vector<int64_t>& counts) {
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == num_experts_, "LocalDispatcher: ", counts.size(),
              " expert counts for ", num_experts_, " experts");
  return {rows, counts};
}

GroupedExpertsImpl::GroupedExpertsImpl(int64_t dim, int64_t hidden_dim, int64_t num_experts, torch::Dtype compute_dtype,
                                       bool fast_paths, const torch::TensorOptions& param_options)
    : compute_dtype_(compute_dtype), fast_paths_(fast_paths) {
  w1 = register_parameter("w1", torch::zeros({num_experts, hidden_dim, dim}, param_options));
  w2 = register_parameter("w2", torch::zeros({num_experts, dim, hidden_dim}, param_options));
  w3 = register_parameter("w3", torch::zeros({num_experts, hidden_dim, dim}, param_options));
}

torch::Tensor GroupedExpertsImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& counts) {
  const auto dt = compute_dtype_;
  auto xc = cast(x, dt);
  const auto weight = [&](const torch::Tensor& w) { return fused ? cast_parameter(w, dt) : cast(w, dt); };
  if (fast_paths_ && grouped_mm_usable(xc, w1))
    return experts_grouped_mm(xc, weight(w1), weight(w2), weight(w3), counts, fused);
  return experts_reference(xc, weight(w1), weight(w2), weight(w3), counts, fused);
}

RouterImpl::RouterImpl(int64_t dim, int64_t num_experts, int64_t top_k, bool route_norm, double route_scale,
                       torch::Dtype compute_dtype, const torch::TensorOptions& param_options)
    : num_experts_(num_experts),
      top_k_(top_k),
      route_norm_(route_norm),
      route_scale_(route_scale),
      compute_dtype_(compute_dtype) {
  TORCH_CHECK(top_k >= 1 && top_k <= num_experts, "router: top_k ", top_k, " must be in [1, ", num_experts, "]");
  gate = register_module("gate", Linear(dim, num_experts, param_options));
}

RouterOutput RouterImpl::forward(const torch::Tensor& x, const torch::Tensor& expert_bias) {
  auto logits = gate(x, compute_dtype_);  // recomputed under per-op AC, as torchtitan's default
  auto scores = torch::softmax(cast(logits, accum_dtype(logits.scalar_type())), 1);
  torch::Tensor selected;
  {
    torch::NoGradGuard no_grad;  // selection is not differentiable
    if (balanced) {
      const auto index = torch::TensorOptions().dtype(torch::kInt64).device(scores.device());
      selected = torch::arange(scores.size(0) * top_k_, index).remainder(num_experts_).view({-1, top_k_});
    } else {
      auto for_choice = expert_bias.defined() ? scores + expert_bias.to(scores.scalar_type()) : scores;
      selected = std::get<1>(torch::topk(for_choice, top_k_, /*dim=*/-1, /*largest=*/true, /*sorted=*/true));
    }
  }
  auto top_scores = scores.gather(1, selected);
  if (route_norm_) top_scores = top_scores / (top_scores.sum(-1, /*keepdim=*/true) + 1e-20);
  if (route_scale_ != 1.0) top_scores = top_scores * route_scale_;
  auto counts = torch::bincount(selected.reshape(-1), /*weights=*/{}, num_experts_);
  return {top_scores, selected, counts};
}

MoEImpl::MoEImpl(const MoEOptions& o) : opts_(o) {
  TORCH_CHECK(o.num_local_experts >= 1 && o.num_local_experts <= o.num_experts, "MoE: local experts ",
              o.num_local_experts, " must be in [1, ", o.num_experts, "]");
  router = register_module(
      "router", Router(o.dim, o.num_experts, o.top_k, o.route_norm, o.route_scale, o.compute_dtype, o.param_options));
  experts = register_module("experts", GroupedExperts(o.dim, o.hidden_dim, o.num_local_experts, o.compute_dtype,
                                                      o.fast_paths, o.param_options));
  auto buf = o.param_options.dtype(torch::kFloat32);
  expert_bias = register_buffer("expert_bias", torch::zeros({o.num_experts}, buf));
  tokens_per_expert = register_buffer("tokens_per_expert", torch::zeros({o.num_experts}, buf));
  if (o.num_local_experts == o.num_experts) dispatcher_ = std::make_shared<LocalDispatcher>(o.num_experts);
}

void MoEImpl::set_dispatcher(std::shared_ptr<ExpertDispatcher> d) {
  TORCH_CHECK(d != nullptr, "MoE: null dispatcher");
  TORCH_CHECK(d->num_local_experts() == experts->num_experts(), "MoE: dispatcher owns ", d->num_local_experts(),
              " experts but this layer holds ", experts->num_experts());
  dispatcher_ = std::move(d);
}

torch::Tensor MoEImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(dispatcher_ != nullptr, "MoE: layer holds ", experts->num_experts(), " of ", opts_.num_experts,
              " experts but no ExpertDispatcher was set");
  const int64_t dim = x.size(-1), k = opts_.top_k;
  auto xf = x.reshape({-1, dim});
  const int64_t n = xf.size(0);

  auto route = router(xf, expert_bias);
  if (!is_recomputing()) {
    torch::NoGradGuard no_grad;
    tokens_per_expert.add_(route.counts.to(tokens_per_expert.scalar_type()));
  }

  // Rows (token, choice) sorted by expert id; row r reads token order[r] / k.
  auto order = compat::stable_argsort(route.selected_experts.reshape(-1));
  auto inverse = torch::empty_like(order).scatter_(0, order, torch::arange(order.numel(), order.options()));
  auto routed_input = gather_token_rows(xf, order, inverse, k);
  auto counts_cpu = route.counts.to(torch::kCPU);
  std::vector<int64_t> counts(counts_cpu.data_ptr<int64_t>(), counts_cpu.data_ptr<int64_t>() + opts_.num_experts);

  auto [local_rows, local_counts] = dispatcher_->dispatch(routed_input, counts);
  auto local_out = experts(local_rows, local_counts);
  auto routed_output = dispatcher_->combine(local_out);  // [n * k, dim] in `order`

  auto unsorted = permute_rows(routed_output, inverse, order).view({n, k, dim});
  // Gates applied after the experts, in fp32 (torchtitan's score_before_experts = false).
  const auto& gates = route.top_scores;
  auto out = fused ? weighted_expert_sum(gates, unsorted) : weighted_expert_sum_reference(gates, unsorted);
  return cast(out, x.scalar_type()).view(x.sizes());
}

void MoEImpl::apply_expert_bias_update(const torch::Tensor& counts) {
  if (opts_.load_balance_coeff <= 0) return;
  torch::NoGradGuard no_grad;
  auto c = counts.to(expert_bias.device(), torch::kFloat32);
  auto delta = opts_.load_balance_coeff * torch::sign(c.mean() - c);
  delta = delta - delta.mean();
  expert_bias.add_(delta.to(expert_bias.scalar_type()));
}

LayerSizes LayerSizes::full(const Flavor& f) {
  LayerSizes s;
  s.n_heads = f.n_heads;
  s.n_kv_heads = f.n_kv_heads;
  s.hidden_dim = f.hidden_dim;
  s.moe_hidden_dim = f.moe_inter_dim;
  s.num_local_experts = f.num_experts;
  return s;
}

TransformerBlockImpl::TransformerBlockImpl(int64_t layer_id, const ModelOptions& o, const LayerSizes& local)
    : layer_id_(layer_id) {
  const Flavor& f = o.flavor;
  const auto p = param_options_for(o);
  AttentionOptions ao;
  ao.dim = f.dim;
  ao.n_heads = local.n_heads;
  ao.n_kv_heads = local.n_kv_heads;
  ao.head_dim = f.head_dim;
  ao.qk_norm = f.qk_norm;
  ao.norm_eps = f.norm_eps;
  ao.compute_dtype = o.compute_dtype;
  ao.fast_paths = o.fast_paths;
  ao.param_options = p;
  attention = register_module("attention", Attention(ao));
  if (f.moe) {
    if (f.num_shared_experts != 0)
      throw std::invalid_argument("flavor " + f.name + ": shared experts are not supported (num_shared_experts = " +
                                  std::to_string(f.num_shared_experts) + ")");
    MoEOptions mo;
    mo.dim = f.dim;
    mo.hidden_dim = local.moe_hidden_dim;
    mo.num_experts = f.num_experts;
    mo.num_local_experts = local.num_local_experts;
    mo.top_k = f.top_k;
    mo.route_norm = f.route_norm;
    mo.load_balance_coeff = f.load_balance_coeff;
    mo.compute_dtype = o.compute_dtype;
    mo.fast_paths = o.fast_paths;
    mo.param_options = p;
    moe = register_module("moe", MoE(mo));
  } else {
    feed_forward = register_module("feed_forward", FeedForward(f.dim, local.hidden_dim, o.compute_dtype, p));
  }
  attention_norm = register_module("attention_norm", RMSNorm(f.dim, f.norm_eps, p));
  ffn_norm = register_module("ffn_norm", RMSNorm(f.dim, f.norm_eps, p));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& rope_cache) {
  if (forward_hooks.before) forward_hooks.before();
  auto a = run_hook(attention_hooks.enter_region, attention_norm(x));
  auto h = x + run_hook(attention_hooks.exit_region, attention(a, rope_cache));
  auto f = run_hook(ffn_hooks.enter_region, ffn_norm(h));
  auto y = is_moe() ? moe(f) : feed_forward(f);
  auto out = h + run_hook(ffn_hooks.exit_region, y);
  if (forward_hooks.after) forward_hooks.after();
  return out;
}

void TransformerBlockImpl::replace_attention(Attention a) { attention = replace_module("attention", std::move(a)); }

void TransformerBlockImpl::replace_feed_forward(FeedForward f) {
  TORCH_CHECK(!is_moe(), "replace_feed_forward on an MoE block");
  feed_forward = replace_module("feed_forward", std::move(f));
}

void TransformerBlockImpl::replace_moe(MoE m) {
  TORCH_CHECK(is_moe(), "replace_moe on a dense block");
  moe = replace_module("moe", std::move(m));
}

Qwen3ModelImpl::EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& o) {
  weight = register_parameter("weight", torch::zeros({vocab, dim}, o));
}

Qwen3ModelImpl::Qwen3ModelImpl(const ModelOptions& o) : opts_(o) {
  const Flavor& f = o.flavor;
  TORCH_CHECK(f.vocab_size > 0 && f.dim > 0 && f.n_layers > 0 && f.head_dim > 0,
              "flavor " + f.name + " has empty dimensions");
  const auto p = param_options_for(o);
  tok_embeddings = register_module("tok_embeddings", std::make_shared<EmbeddingImpl>(f.vocab_size, f.dim, p));
  layer_list_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < f.n_layers; ++i) {
    layers_.push_back(TransformerBlock(i, o, LayerSizes::full(f)));
    layer_list_->push_back(layers_.back());
  }
  norm = register_module("norm", RMSNorm(f.dim, f.norm_eps, p));
  if (!f.tie_embeddings) output = register_module("output", Linear(f.dim, f.vocab_size, p));
}

const torch::Tensor& Qwen3ModelImpl::rope_cache_for(int64_t seq_len) {
  if (!rope_cache_.defined() || rope_cache_.size(0) < seq_len || rope_cache_.device() != opts_.device)
    rope_cache_ = precompute_rope_cache(opts_.flavor.head_dim, seq_len, opts_.flavor.rope_theta).to(opts_.device);
  return rope_cache_;
}

torch::Tensor Qwen3ModelImpl::trunk(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "tokens must be [batch, seq], got ", tokens.sizes());
  const int64_t b = tokens.size(0), s = tokens.size(1);
  auto h = cast(tok_embeddings->weight.index_select(0, tokens.reshape(-1)).view({b, s, -1}), opts_.compute_dtype);
  const torch::Tensor rope = rope_cache_for(s);
  for (auto& block : layers_) {
    if (block->ac == BlockAC::None) {
      h = block->forward(h, rope);
      continue;
    }
    TransformerBlock blk = block;
    h = checkpoint([blk, rope](const torch::Tensor& in) mutable { return blk->forward(in, rope); }, h,
                   block->parameters(), /*per_op=*/block->ac == BlockAC::PerOp);
  }
  return h;
}

void Qwen3ModelImpl::replace_output(Linear l) {
  TORCH_CHECK(!output.is_empty(), "replace_output: the flavor ties its embeddings (no output layer)");
  output = replace_module("output", std::move(l));
}

torch::Tensor Qwen3ModelImpl::output_weight() const {
  return output.is_empty() ? tok_embeddings->weight : output->weight;
}

torch::Tensor Qwen3ModelImpl::forward(const torch::Tensor& tokens) {
  const auto dt = opts_.compute_dtype;
  if (forward_hooks.before) forward_hooks.before();
  auto h = norm(trunk(tokens));
  auto logits = torch::linear(cast(h, dt), cast(output_weight(), dt));
  if (forward_hooks.after) forward_hooks.after();
  return cast(logits, accum_dtype(dt));
}

torch::Tensor Qwen3ModelImpl::forward_loss(const torch::Tensor& tokens, const torch::Tensor& labels) {
  if (!chunked_loss) return trainer::cross_entropy_loss(forward(tokens), labels);
  // Inside the hooks: under FSDP the output weight is the gathered tensor
  // only between before() and after().
  if (forward_hooks.before) forward_hooks.before();
  auto h = cast(norm(trunk(tokens)), opts_.compute_dtype);
  if (loss_parallel.enter_region) h = loss_parallel.enter_region(h);
  auto loss = chunked_linear_cross_entropy(h, output_weight(), labels, loss_chunk_tokens, loss_parallel);
  if (forward_hooks.after) forward_hooks.after();
  return loss;
}

void Qwen3ModelImpl::update_expert_biases(const TensorFn& all_reduce_counts) {
  std::vector<torch::Tensor> counts;
  for (auto& block : layers_)
    if (block->is_moe()) counts.push_back(block->moe->tokens_per_expert);
  if (counts.empty()) return;
  torch::NoGradGuard no_grad;
  auto stacked = torch::stack(counts);
  if (all_reduce_counts) stacked = all_reduce_counts(stacked);
  size_t row = 0;
  for (auto& block : layers_) {
    if (!block->is_moe()) continue;
    block->moe->apply_expert_bias_update(stacked[static_cast<int64_t>(row++)]);
    block->moe->tokens_per_expert.zero_();
  }
}

}  // namespace partune::trainer
