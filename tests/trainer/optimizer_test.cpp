// trainer/train/optimizer: the three AdamW implementations against each
// other (LibTorch's for-loop AdamW is the reference) and against the update
// worked by hand. The fused kernel exists only in LibTorch >= 2.4: there it
// runs on the CPU and, where present, on CUDA; elsewhere it must be refused.
#include "trainer/train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace partune::trainer {
namespace {

AdamWOptions options() {
  AdamWOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  return o;
}

// Parameters of several shapes.
std::vector<torch::Tensor> make_params(torch::Device device) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> ps;
  for (auto shape : std::vector<std::vector<int64_t>>{{17}, {8, 33}, {3, 5, 7}, {1}})
    ps.push_back(torch::randn(shape, torch::kFloat32).to(device).requires_grad_(true));
  return ps;
}

// Five steps with changing lr and gradients; parameter 2 has no gradient on
// step 3 (it must keep its value, and its step count, through that step).
// divisor > 0: step s (0-based) through step(lr, grad_div) with the divisor
// divisor * (s + 1) (clipping coefficients that change from step to step:
// Adam is invariant to one constant scale, not to these); < 0: the
// gradients divided by the same by hand, then step(lr) — the reference.
void run_steps(AdamW& opt, std::vector<torch::Tensor>& ps, double divisor = 0) {
  torch::manual_seed(11);
  const double lrs[] = {1e-2, 3e-3, 5e-2, 1e-3, 2e-2};
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    for (size_t i = 0; i < ps.size(); ++i) {
      auto g = torch::randn(ps[i].sizes(), torch::kFloat32).to(ps[i].device());
      if (step == 2 && i == 2) continue;
      ps[i].mutable_grad() = divisor < 0 ? g / (-divisor * (step + 1)) : g;
    }
    if (divisor > 0)
      opt.step(lrs[step], torch::full({}, divisor * (step + 1), torch::kFloat32));
    else
      opt.step(lrs[step]);
  }
}

void expect_same_params(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, double rtol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = a[i].detach().cpu(), y = b[i].detach().cpu();
    const double err = (x - y).abs().max().item<double>();
    const double scale = y.abs().max().item<double>();
    EXPECT_LE(err, rtol * scale) << "parameter " << i;
  }
}

std::vector<torch::Tensor> trained(AdamWImpl impl, torch::Device device) {
  auto ps = make_params(device);
  AdamW opt(ps, options(), impl);
  run_steps(opt, ps);
  return ps;
}

TEST(AdamW, ParsesImplementationNames) {
  EXPECT_EQ(parse_adamw_impl("for-loop"), AdamWImpl::ForLoop);
  EXPECT_EQ(parse_adamw_impl("foreach"), AdamWImpl::Foreach);
  EXPECT_EQ(parse_adamw_impl("fused"), AdamWImpl::Fused);
  EXPECT_THROW(parse_adamw_impl("Fused"), std::invalid_argument);
  EXPECT_EQ(to_string(AdamWImpl::Foreach), "foreach");
  EXPECT_EQ(resolve_adamw_impl("for-loop"), AdamWImpl::ForLoop);
  EXPECT_EQ(resolve_adamw_impl("fused"), fused_adamw_available() ? AdamWImpl::Fused : AdamWImpl::Foreach);
}

// One step from zero moments, worked by hand: m = (1-b1) g, v = (1-b2) g^2,
// bias-corrected they are g and g^2, so p' = p (1 - lr wd) - lr g / (|g| + eps').
TEST(AdamW, FirstStepMatchesTheFormula) {
  for (AdamWImpl impl : {AdamWImpl::ForLoop, AdamWImpl::Foreach}) {
    auto p = torch::tensor({2.0f, -1.0f, 0.5f}).requires_grad_(true);
    AdamW opt({p}, options(), impl);
    p.mutable_grad() = torch::tensor({0.25f, -4.0f, 1e-3f});
    opt.step(0.01);
    const float g[] = {0.25f, -4.0f, 1e-3f}, p0[] = {2.0f, -1.0f, 0.5f};
    for (int i = 0; i < 3; ++i) {
      const double want = p0[i] * (1 - 0.01 * 0.1) - 0.01 * g[i] / (std::fabs(g[i]) + 1e-8);
      EXPECT_NEAR(p[i].item<double>(), want, 1e-6) << to_string(impl) << " element " << i;
    }
  }
}

TEST(AdamW, ForeachEqualsForLoop) {
  expect_same_params(trained(AdamWImpl::Foreach, torch::kCPU), trained(AdamWImpl::ForLoop, torch::kCPU), 1e-6);
}

TEST(AdamW, ParameterWithoutGradientIsLeftAlone) {
  for (AdamWImpl impl : {AdamWImpl::ForLoop, AdamWImpl::Foreach}) {
    auto ps = make_params(torch::kCPU);
    auto before = ps[1].detach().clone();
    AdamW opt(ps, options(), impl);
    ps[0].mutable_grad() = torch::ones_like(ps[0]);
    opt.step(0.1);
    EXPECT_TRUE(torch::equal(ps[1].detach(), before)) << to_string(impl);
    EXPECT_FALSE(torch::equal(ps[0].detach(), make_params(torch::kCPU)[0].detach())) << to_string(impl);
  }
}

TEST(AdamW, ZeroGradDropsGradients) {
  auto ps = make_params(torch::kCPU);
  AdamW opt(ps, options(), AdamWImpl::Foreach);
  for (auto& p : ps) p.mutable_grad() = torch::ones_like(p);
  opt.zero_grad();
  for (auto& p : ps) EXPECT_FALSE(p.grad().defined());
}

// Where this LibTorch has the kernel the fused update equals the reference
// (CPU, and CUDA when present); where it has not, asking for it is an error.
TEST(AdamW, FusedEqualsForLoopOrIsRefused) {
  if (!fused_adamw_available()) {
    auto ps = make_params(torch::kCPU);
    EXPECT_THROW(AdamW(ps, options(), AdamWImpl::Fused), std::logic_error);
    return;
  }
  expect_same_params(trained(AdamWImpl::Fused, torch::kCPU), trained(AdamWImpl::ForLoop, torch::kCPU), 1e-5);
  if (torch::cuda::is_available())
    expect_same_params(trained(AdamWImpl::Fused, torch::kCUDA), trained(AdamWImpl::ForLoop, torch::kCUDA), 1e-5);
}

// Gradient clipping folded into the step (the trainer's path for fused AdamW,
// where the kernel divides as it reads): the same update as dividing first,
// for every implementation this LibTorch has, on the CPU and CUDA.
TEST(AdamW, StepWithDivisorEqualsDividingTheGradientsFirst) {
  std::vector<AdamWImpl> impls{AdamWImpl::ForLoop, AdamWImpl::Foreach};
  if (fused_adamw_available()) impls.push_back(AdamWImpl::Fused);
  std::vector<torch::Device> devices{torch::kCPU};
  if (torch::cuda::is_available()) devices.push_back(torch::kCUDA);
  for (auto device : devices)
    for (auto impl : impls) {
      auto folded = make_params(device), reference = make_params(device);
      AdamW a(folded, options(), impl), b(reference, options(), AdamWImpl::ForLoop);
      run_steps(a, folded, 3.5);
      run_steps(b, reference, -3.5);
      expect_same_params(folded, reference, 1e-5);
      // and the divisor mattered: an undivided run ends elsewhere
      auto plain = make_params(device);
      AdamW c(plain, options(), impl);
      run_steps(c, plain);
      const double moved = (plain[1].detach() - folded[1].detach()).abs().max().item<double>();
      EXPECT_GT(moved, 1e-4) << to_string(impl);
    }
  EXPECT_EQ(AdamW(make_params(torch::kCPU), options(), AdamWImpl::Foreach).divides_in_kernel(), false);
}

}  // namespace
}  // namespace partune::trainer
