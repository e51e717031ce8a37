// Helpers shared by the model and checkpoint tests: tiny flavors and a
// central finite-difference gradient check.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "common/flavors.h"

namespace partune::trainer::testing {

// debugmodel / debugmodel_moe shrunk to dim 32, 2 layers, 4 heads, 2 kv
// heads, head_dim 8, vocab 64; MoE: 8 experts, top 2, expert hidden 16.
inline Flavor tiny_flavor(bool moe) {
  Flavor f = *find_flavor("qwen3", moe ? "debugmodel_moe" : "debugmodel");
  f.name = moe ? "tiny_moe" : "tiny";
  f.vocab_size = 64;
  f.dim = 32;
  f.n_layers = 2;
  f.n_heads = 4;
  f.n_kv_heads = 2;
  f.head_dim = 8;
  f.hidden_dim = 48;
  f.max_seq_len = 16;
  if (moe) {
    f.moe_inter_dim = 16;
    f.num_experts = 8;
    f.top_k = 2;
  }
  return f;
}

inline torch::TensorOptions f64() { return torch::TensorOptions().dtype(torch::kFloat64); }

// Compares the analytic gradient `grad` of scalar loss() with respect to
// `param` against central differences at up to `max_points` elements (spread
// over the tensor). Returns the largest |analytic - numeric| / max(1, |numeric|).
inline double max_fd_error(const std::function<torch::Tensor()>& loss, torch::Tensor param, const torch::Tensor& grad,
                           int64_t max_points = 12, double eps = 1e-6) {
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(grad.defined());
  if (!grad.defined()) return 1e9;
  auto flat = param.view(-1);  // shares storage with the parameter
  auto g = grad.reshape(-1);
  const int64_t n = flat.numel();
  const int64_t step = std::max<int64_t>(1, n / max_points);
  double worst = 0;
  for (int64_t i = (n > max_points ? step / 2 : 0); i < n; i += step) {
    const double orig = flat[i].item<double>();
    flat[i].fill_(orig + eps);
    const double up = loss().item<double>();
    flat[i].fill_(orig - eps);
    const double down = loss().item<double>();
    flat[i].fill_(orig);
    const double numeric = (up - down) / (2 * eps);
    const double analytic = g[i].item<double>();
    worst = std::max(worst, std::abs(analytic - numeric) / std::max(1.0, std::abs(numeric)));
  }
  return worst;
}

// Runs loss() with grad, then checks every named tensor against finite differences.
inline void expect_gradients_match(const std::function<torch::Tensor()>& loss,
                                   const std::vector<std::pair<std::string, torch::Tensor>>& tensors, double tol = 1e-6,
                                   int64_t max_points = 12) {
  for (auto& [name, t] : tensors)
    if (t.grad().defined()) t.mutable_grad().zero_();
  loss().backward();
  for (auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(t.grad().defined()) << name << " got no gradient";
    auto grad = t.grad().clone();
    EXPECT_LT(max_fd_error(loss, t, grad, max_points), tol) << name;
  }
}

}  // namespace partune::trainer::testing
