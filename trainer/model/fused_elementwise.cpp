#include "trainer/model/fused_elementwise.h"

#include "trainer/model/ops.h"

namespace partune::trainer {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SwiGLU : torch::autograd::Function<SwiGLU> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return torch::silu(a) * b;
  }
  // Eager's math and roundings (mul's backward, then silu_backward, whose
  // kernel computes in fp32 for half types), silu(a) recomputed.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& a = saved[0];
    const auto& b = saved[1];
    const auto& g = grads[0];
    torch::Tensor grad_a, grad_b;
    if (ctx->needs_input_grad(0)) grad_a = torch::silu_backward(g * b, a);
    if (ctx->needs_input_grad(1)) grad_b = g * torch::silu(a);
    return {grad_a, grad_b};
  }
};

struct WeightedExpertSum : torch::autograd::Function<WeightedExpertSum> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gates, const torch::Tensor& y) {
    ctx->save_for_backward({gates, y});
    const int64_t n = y.size(0), k = y.size(1);
    return torch::bmm(gates.view({n, 1, k}), cast(y, gates.scalar_type())).squeeze(1);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& gates = saved[0];
    const auto& y = saved[1];
    const auto g = cast(grads[0], gates.scalar_type());  // [n, dim]
    torch::Tensor grad_gates, grad_y;
    if (ctx->needs_input_grad(0)) grad_gates = torch::bmm(cast(y, gates.scalar_type()), g.unsqueeze(2)).squeeze(2);
    if (ctx->needs_input_grad(1)) grad_y = cast(gates.unsqueeze(2) * g.unsqueeze(1), y.scalar_type());
    return {grad_gates, grad_y};
  }
};

// (x1, x2) rotated by the angles whose cos and sin are given ([1, S, 1, D/2]
// in x's dtype); sign -1 rotates back (the transpose, for the gradient).
torch::Tensor rotate_halves(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double sign) {
  const int64_t h = x.size(-1) / 2;
  const torch::Tensor x1 = x.narrow(-1, 0, h), x2 = x.narrow(-1, h, h);
  torch::Tensor out = torch::empty(x.sizes(), x.options());
  torch::Tensor o1 = out.narrow(-1, 0, h), o2 = out.narrow(-1, h, h);
  torch::mul_out(o1, x1, cos).addcmul_(x2, sin, -sign);
  torch::mul_out(o2, x2, cos).addcmul_(x1, sin, sign);
  return out;
}

struct RotaryEmb : torch::autograd::Function<RotaryEmb> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotate_halves(x, cos, sin, 1.0);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {rotate_halves(grads[0], saved[0], saved[1], -1.0), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor rotary_emb(const torch::Tensor& x, const torch::Tensor& rope_cache) {
  const int64_t s = x.size(1), d = x.size(3);
  TORCH_CHECK(d % 2 == 0 && rope_cache.size(0) >= s && rope_cache.size(1) == 2 * d, "rope cache [", rope_cache.size(0),
              ", ", rope_cache.size(1), "] does not cover seq_len ", s, " head_dim ", d);
  const auto cache = rope_cache.slice(0, 0, s).to(x.device(), x.scalar_type());
  const auto cos = cache.slice(1, 0, d / 2).view({1, s, 1, d / 2});
  const auto sin = cache.slice(1, d, d + d / 2).view({1, s, 1, d / 2});
  return RotaryEmb::apply(x, cos, sin);
}

torch::Tensor swiglu(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(), "swiglu: a ", a.sizes(), " ",
              a.scalar_type(), " and b ", b.sizes(), " ", b.scalar_type(), " differ");
  return SwiGLU::apply(a, b);
}

torch::Tensor swiglu_reference(const torch::Tensor& a, const torch::Tensor& b) { return torch::silu(a) * b; }

torch::Tensor weighted_expert_sum(const torch::Tensor& gates, const torch::Tensor& y) {
  TORCH_CHECK(gates.dim() == 2 && y.dim() == 3 && y.size(0) == gates.size(0) && y.size(1) == gates.size(1),
              "weighted_expert_sum: gates ", gates.sizes(), " and expert outputs ", y.sizes(), " do not match");
  return WeightedExpertSum::apply(gates, y);
}

torch::Tensor weighted_expert_sum_reference(const torch::Tensor& gates, const torch::Tensor& y) {
  const int64_t n = y.size(0), k = y.size(1);
  return torch::bmm(gates.view({n, 1, k}), cast(y, gates.scalar_type())).squeeze(1);
}

}  // namespace partune::trainer
