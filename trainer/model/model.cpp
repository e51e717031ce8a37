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

torch::Tensor cast(const torch::Tensor& t, torch::Dtype dt) { return t.scalar_type() == dt ? t : t.to(dt); }

torch::Tensor run_hook(const TensorFn& hook, const torch::Tensor& t) { return hook ? hook(t) : t; }

}  // namespace

// ---------------------------------------------------------------- functional

torch::Dtype accum_dtype(torch::Dtype t) { return t == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32; }

bool fused_rms_norm_available() { return PARTUNE_HAS_RMS_NORM; }

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
#if PARTUNE_HAS_RMS_NORM
  // Input and weight in the accumulation dtype: the fused kernel wants one
  // dtype, and fp32 keeps the reference's rounding (one, at the end).
  if (x.is_cuda()) {
    const auto acc = accum_dtype(x.scalar_type());
    return cast(compat::rms_norm(cast(x, acc), cast(weight, acc), eps), x.scalar_type());
  }
#endif
  return rms_norm_reference(x, weight, eps);
}

torch::Tensor rms_norm_compiled(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
#if PARTUNE_HAS_RMS_NORM
  if (x.is_cuda()) return compat::rms_norm(x, cast(weight, x.scalar_type()), eps);
#endif
  return rms_norm(x, weight, eps);
}

torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto acc = accum_dtype(x.scalar_type());
  auto xf = cast(x, acc);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return cast(y * cast(weight, acc), x.scalar_type());
}

torch::Tensor precompute_rope_cache(int64_t head_dim, int64_t seq_len, double theta) {
  torch::NoGradGuard no_grad;
  auto exponents = torch::arange(0, head_dim, 2, torch::kFloat32).slice(0, 0, head_dim / 2) / static_cast<double>(head_dim);
  auto freqs = 1.0 / torch::pow(theta, exponents);
  auto t = torch::arange(seq_len, torch::kFloat32);
  auto angles = torch::outer(t, freqs);          // [S, D/2]
  auto both = torch::cat({angles, angles}, -1);  // [S, D]
  return torch::cat({both.cos(), both.sin()}, -1);
}

torch::Tensor apply_rotary_emb(const torch::Tensor& x, const torch::Tensor& rope_cache) {
  const int64_t s = x.size(1), d = x.size(3);
  TORCH_CHECK(rope_cache.size(0) >= s && rope_cache.size(1) == 2 * d, "rope cache [", rope_cache.size(0), ", ",
              rope_cache.size(1), "] does not cover seq_len ", s, " head_dim ", d);
  auto cache = rope_cache.slice(0, 0, s).to(x.device(), x.scalar_type());
  auto cos = cache.slice(1, 0, d).view({1, s, 1, d});
  auto sin = cache.slice(1, d, 2 * d).view({1, s, 1, d});
  auto x1 = x.slice(-1, 0, d / 2);
  auto x2 = x.slice(-1, d / 2, d);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

torch::Tensor causal_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t hq = q.size(1), hkv = k.size(1), s = q.size(2), d = q.size(3);
  TORCH_CHECK(hq % hkv == 0, "query heads ", hq, " not a multiple of kv heads ", hkv);
  auto kk = hkv == hq ? k : k.repeat_interleave(hq / hkv, 1);
  auto vv = hkv == hq ? v : v.repeat_interleave(hq / hkv, 1);
  const auto acc = accum_dtype(q.scalar_type());
  auto scores = cast(torch::matmul(q, kk.transpose(-2, -1)), acc) * (1.0 / std::sqrt(static_cast<double>(d)));
  auto future = torch::ones({s, s}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
  auto probs = torch::softmax(scores.masked_fill(future, -std::numeric_limits<double>::infinity()), -1);
  return torch::matmul(cast(probs, q.scalar_type()), vv);
}

bool sdpa_available() { return PARTUNE_HAS_SDPA_GQA; }

torch::Tensor causal_attention_sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if PARTUNE_HAS_SDPA_GQA
  return compat::sdpa_causal_gqa(q, k, v, 1.0 / std::sqrt(static_cast<double>(q.size(3))));
#else
  (void)q, (void)k, (void)v;
  throw std::logic_error("scaled_dot_product_attention with GQA needs LibTorch >= 2.5");
#endif
}

torch::Tensor experts_reference(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& w2,
                                const torch::Tensor& w3, const std::vector<int64_t>& counts, bool fused) {
  const auto gate = fused ? swiglu : swiglu_reference;
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == w1.size(0), "expert counts (", counts.size(),
              ") != local experts (", w1.size(0), ")");
  std::vector<torch::Tensor> outs;
  // unbind, not w[i]: the backward of each w[i] would materialise a zero
  // gradient of the whole [E, ...] weight (E full-size buffers per step);
  // unbind's backward stacks the per-expert gradients once.
  const auto w1s = w1.unbind(0), w2s = w2.unbind(0), w3s = w3.unbind(0);
  int64_t offset = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] == 0) continue;
    auto xe = x.narrow(0, offset, counts[e]);
    auto h = gate(torch::mm(xe, w1s[e].t()), torch::mm(xe, w3s[e].t()));
    outs.push_back(torch::mm(h, w2s[e].t()));
    offset += counts[e];
  }
  TORCH_CHECK(offset == x.size(0), "expert counts sum to ", offset, " but there are ", x.size(0), " rows");
  // No rows at all: still run one expert on the empty input, so the output
  // stays in the autograd graph of x and the weights. Under expert or fully
  // sharded parallelism their backward runs collectives every rank must join.
  if (outs.empty()) return torch::mm(gate(torch::mm(x, w1[0].t()), torch::mm(x, w3[0].t())), w2[0].t());
  return torch::cat(outs, 0);
}

bool grouped_mm_usable(const torch::Tensor& x, const torch::Tensor& w1) {
#if PARTUNE_HAS_GROUPED_MM
  return x.is_cuda() && x.scalar_type() == torch::kBFloat16 && x.size(1) % 8 == 0 && w1.size(1) % 8 == 0;
#else
  (void)x, (void)w1;
  return false;
#endif
}

torch::Tensor experts_grouped_mm(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& w2,
                                 const torch::Tensor& w3, const std::vector<int64_t>& counts, bool fused) {
#if PARTUNE_HAS_GROUPED_MM
  const auto gate = fused ? swiglu : swiglu_reference;
  TORCH_CHECK(static_cast<int64_t>(counts.size()) == w1.size(0), "expert counts (", counts.size(),
              ") != local experts (", w1.size(0), ")");
  std::vector<int32_t> ends(counts.size());
  int64_t total = 0;
  for (size_t e = 0; e < counts.size(); ++e) ends[e] = static_cast<int32_t>(total += counts[e]);
  TORCH_CHECK(total == x.size(0), "expert counts sum to ", total, " but there are ", x.size(0), " rows");
  auto offs = torch::tensor(ends, torch::kInt32).to(x.device(), /*non_blocking=*/true);
  auto h = gate(compat::grouped_mm(x, w1.transpose(-2, -1), offs), compat::grouped_mm(x, w3.transpose(-2, -1), offs));
  return compat::grouped_mm(h, w2.transpose(-2, -1), offs);
#else
  (void)x, (void)w1, (void)w2, (void)w3, (void)counts, (void)fused;
  throw std::logic_error("grouped GEMM needs LibTorch >= 2.8");
#endif
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct PermuteRows : torch::autograd::Function<PermuteRows> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& order,
                               const torch::Tensor& inverse) {
    ctx->save_for_backward({inverse});
    return x.index_select(0, order);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto inverse = ctx->get_saved_variables()[0];
    return {grads[0].index_select(0, inverse), torch::Tensor(), torch::Tensor()};
  }
};

struct GatherTokenRows : torch::autograd::Function<GatherTokenRows> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& order,
                               const torch::Tensor& inverse, int64_t k) {
    ctx->save_for_backward({inverse});
    ctx->saved_data["k"] = k;
    return x.index_select(0, torch::div(order, k, "trunc"));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto inverse = ctx->get_saved_variables()[0];
    const int64_t k = ctx->saved_data["k"].toInt();
    const auto& g = grads[0];
    auto per_choice = g.index_select(0, inverse).view({-1, k, g.size(1)});  // [n, k, dim], unsorted
    // Sum of k rows in the accumulation dtype, like the reference's index_add
    // would do exactly in fp32/fp64 (and better than it does in bf16).
    auto summed = per_choice.sum(1, /*keepdim=*/false, accum_dtype(g.scalar_type())).to(g.scalar_type());
    return {summed, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor permute_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse) {
  TORCH_CHECK(order.numel() == x.size(0) && inverse.numel() == x.size(0), "permute_rows: ", x.size(0),
              " rows but order/inverse have ", order.numel(), "/", inverse.numel());
  return PermuteRows::apply(x, order, inverse);
}

torch::Tensor gather_token_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse,
                                int64_t k) {
  TORCH_CHECK(k >= 1 && order.numel() == x.size(0) * k && inverse.numel() == order.numel(),
              "gather_token_rows: ", x.size(0), " tokens x ", k, " choices but order/inverse have ", order.numel(),
              "/", inverse.numel());
  return GatherTokenRows::apply(x, order, inverse, k);
}

torch::Tensor cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  auto flat = cast(logits.flatten(0, 1), accum_dtype(logits.scalar_type()));
  return torch::nn::functional::cross_entropy(
      flat, labels.flatten(0, 1),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kMean));
}

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
  TORCH_CHECK(o.n_heads > 0 && o.n_kv_heads > 0 && o.n_heads % o.n_kv_heads == 0, "attention: local heads ",
              o.n_heads, " must be a positive multiple of local kv heads ", o.n_kv_heads);
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
  q = apply_rotary_emb(q, rope_cache).transpose(1, 2);  // [B, H, S, hd]
  k = apply_rotary_emb(k, rope_cache).transpose(1, 2);
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

GroupedExpertsImpl::GroupedExpertsImpl(int64_t dim, int64_t hidden_dim, int64_t num_experts,
                                       torch::Dtype compute_dtype, bool fast_paths,
                                       const torch::TensorOptions& param_options)
    : compute_dtype_(compute_dtype), fast_paths_(fast_paths) {
  w1 = register_parameter("w1", torch::zeros({num_experts, hidden_dim, dim}, param_options));
  w2 = register_parameter("w2", torch::zeros({num_experts, dim, hidden_dim}, param_options));
  w3 = register_parameter("w3", torch::zeros({num_experts, hidden_dim, dim}, param_options));
}

torch::Tensor GroupedExpertsImpl::forward(const torch::Tensor& x, const std::vector<int64_t>& counts) {
  const auto dt = compute_dtype_;
  auto xc = cast(x, dt);
  if (fast_paths_ && grouped_mm_usable(xc, w1))
    return experts_grouped_mm(xc, cast(w1, dt), cast(w2, dt), cast(w3, dt), counts, fused);
  return experts_reference(xc, cast(w1, dt), cast(w2, dt), cast(w3, dt), counts, fused);
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
    auto for_choice = expert_bias.defined() ? scores + expert_bias.to(scores.scalar_type()) : scores;
    selected = std::get<1>(torch::topk(for_choice, top_k_, /*dim=*/-1, /*largest=*/true, /*sorted=*/true));
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
  router = register_module("router", Router(o.dim, o.num_experts, o.top_k, o.route_norm, o.route_scale,
                                            o.compute_dtype, o.param_options));
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
  auto loss = chunked_linear_cross_entropy(h, output_weight(), labels, loss_chunk_tokens);
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
