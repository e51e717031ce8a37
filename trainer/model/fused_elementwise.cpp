#include "trainer/model/fused_elementwise.h"

#include "trainer/model/model.h"

namespace partune::trainer {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor cast(const torch::Tensor& t, torch::Dtype dt) { return t.scalar_type() == dt ? t : t.to(dt); }

struct SwiGLU : torch::autograd::Function<SwiGLU> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return torch::silu(a) * b;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto dt = saved[0].scalar_type();
    const auto acc = accum_dtype(dt);
    const auto a = cast(saved[0], acc), b = cast(saved[1], acc), g = cast(grads[0], acc);
    const auto s = torch::sigmoid(a);
    // d silu(a) / da = s * (1 + a * (1 - s))
    auto grad_a = g * b * s * (1 + a * (1 - s));
    auto grad_b = g * a * s;
    return {cast(grad_a, dt), cast(grad_b, dt)};
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

}  // namespace

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
