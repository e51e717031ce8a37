#include "trainer/model/ops.h"

#include <cmath>

#include "trainer/model/fused_elementwise.h"
#include "trainer/model/routing.h"
#include "trainer/model/torch_compat.h"

namespace partune::trainer {

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
  auto exponents =
      torch::arange(0, head_dim, 2, torch::kFloat32).slice(0, 0, head_dim / 2) / static_cast<double>(head_dim);
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

#if PARTUNE_HAS_FOREACH_COPY
struct CastParameter : torch::autograd::Function<CastParameter> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& t, torch::Dtype dt) {
    ctx->saved_data["dtype"] = static_cast<int64_t>(t.scalar_type());
    return t.to(dt);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto dt = static_cast<torch::Dtype>(ctx->saved_data["dtype"].toInt());
    const torch::Tensor& g = grads[0];
    torch::Tensor out = torch::empty_like(g, g.options().dtype(dt));  // g's strides: the fast route needs them equal
    compat::foreach_copy(out, g);
    return {out, torch::Tensor()};
  }
};
#endif

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

torch::Tensor cast_parameter(const torch::Tensor& t, torch::Dtype dt) {
#if PARTUNE_HAS_FOREACH_COPY
  if (t.is_cuda() && t.scalar_type() != dt && t.requires_grad() && torch::GradMode::is_enabled())
    return CastParameter::apply(t, dt);
#endif
  return cast(t, dt);
}

torch::Tensor permute_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse) {
  TORCH_CHECK(order.numel() == x.size(0) && inverse.numel() == x.size(0), "permute_rows: ", x.size(0),
              " rows but order/inverse have ", order.numel(), "/", inverse.numel());
  return PermuteRows::apply(x, order, inverse);
}

torch::Tensor gather_token_rows(const torch::Tensor& x, const torch::Tensor& order, const torch::Tensor& inverse,
                                int64_t k) {
  TORCH_CHECK(k >= 1 && order.numel() == x.size(0) * k && inverse.numel() == order.numel(),
              "gather_token_rows: ", x.size(0), " tokens x ", k, " choices but order/inverse have ", order.numel(), "/",
              inverse.numel());
  return GatherTokenRows::apply(x, order, inverse, k);
}

torch::Tensor cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  auto flat = cast(logits.flatten(0, 1), accum_dtype(logits.scalar_type()));
  return torch::nn::functional::cross_entropy(
      flat, labels.flatten(0, 1),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kMean));
}

}  // namespace partune::trainer
