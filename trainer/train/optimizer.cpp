#include "trainer/train/optimizer.h"

#include <cmath>
#include <map>
#include <stdexcept>
#include <utility>

#include "trainer/model/torch_compat.h"

namespace partune::trainer {

namespace {

// Elements per foreach chunk: bounds the sqrt(v) temporary (256 MB of fp32).
constexpr int64_t kForeachChunkElements = int64_t{64} << 20;

}  // namespace

AdamWImpl parse_adamw_impl(const std::string& name) {
  if (name == "for-loop") return AdamWImpl::ForLoop;
  if (name == "foreach") return AdamWImpl::Foreach;
  if (name == "fused") return AdamWImpl::Fused;
  throw std::invalid_argument("AdamW implementation '" + name + "': expected for-loop, foreach or fused");
}

std::string to_string(AdamWImpl impl) {
  switch (impl) {
    case AdamWImpl::ForLoop:
      return "for-loop";
    case AdamWImpl::Foreach:
      return "foreach";
    case AdamWImpl::Fused:
      return "fused";
  }
  return "?";
}

bool fused_adamw_available() { return PARTUNE_HAS_FUSED_ADAMW; }

AdamWImpl resolve_adamw_impl(const std::string& name) {
  const AdamWImpl impl = parse_adamw_impl(name);
  return impl == AdamWImpl::Fused && !fused_adamw_available() ? AdamWImpl::Foreach : impl;
}

// Per-parameter moments and step counts (foreach keeps the counts on the
// host; the fused kernel reads them from 0-dim fp32 tensors on the device).
struct AdamW::State {
  std::vector<torch::Tensor> exp_avg, exp_avg_sq;
  std::vector<int64_t> steps;
  std::vector<torch::Tensor> step_tensors;  // fused only
};

AdamW::AdamW(std::vector<torch::Tensor> params, const AdamWOptions& options, AdamWImpl impl)
    : params_(std::move(params)), opts_(options), impl_(impl) {
  if (impl == AdamWImpl::ForLoop) {
    auto o = torch::optim::AdamWOptions(1e-3)
                 .betas({options.beta1, options.beta2})
                 .eps(options.eps)
                 .weight_decay(options.weight_decay);
    loop_ = std::make_unique<torch::optim::AdamW>(params_, o);
    return;
  }
  if (impl == AdamWImpl::Fused && !fused_adamw_available())
    throw std::logic_error("fused AdamW needs LibTorch >= 2.4 (this is " TORCH_VERSION ")");
  torch::NoGradGuard no_grad;
  state_ = std::make_unique<State>();
  for (const auto& p : params_) {
    state_->exp_avg.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state_->exp_avg_sq.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state_->steps.push_back(0);
    if (impl == AdamWImpl::Fused) state_->step_tensors.push_back(torch::zeros({}, p.options().dtype(torch::kFloat32)));
  }
}

AdamW::~AdamW() = default;

void AdamW::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void AdamW::step(double lr) {
  if (impl_ == AdamWImpl::ForLoop) {
    for (auto& group : loop_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    loop_->step();
  } else if (impl_ == AdamWImpl::Foreach) {
    step_foreach(lr);
  } else {
    step_fused(lr, torch::Tensor());
  }
}

void AdamW::step(double lr, const torch::Tensor& grad_div) {
  if (impl_ == AdamWImpl::Fused) return step_fused(lr, grad_div);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : params_)
      if (p.grad().defined()) p.grad().div_(grad_div.to(p.grad().device(), p.grad().scalar_type()));
  }
  step(lr);
}

void AdamW::step_foreach(double lr) {
  torch::NoGradGuard no_grad;
  const double b1 = opts_.beta1, b2 = opts_.beta2;
  std::vector<torch::Tensor> p, g, m, v;
  std::vector<c10::Scalar> step_size, bc2_sqrt;
  int64_t elements = 0;
  // The same passes, in the same order, as LibTorch's for-loop AdamW.
  auto flush = [&] {
    if (p.empty()) return;
    at::_foreach_mul_(p, 1.0 - lr * opts_.weight_decay);
    at::_foreach_mul_(m, b1);
    at::_foreach_add_(m, g, 1.0 - b1);
    at::_foreach_mul_(v, b2);
    at::_foreach_addcmul_(v, g, g, 1.0 - b2);
    auto denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, bc2_sqrt);
    at::_foreach_add_(denom, opts_.eps);
    at::_foreach_addcdiv_(p, m, denom, step_size);
    p.clear(), g.clear(), m.clear(), v.clear(), step_size.clear(), bc2_sqrt.clear();
    elements = 0;
  };
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& grad = params_[i].grad();
    if (!grad.defined()) continue;
    const int64_t s = ++state_->steps[i];
    const double bc1 = 1.0 - std::pow(b1, static_cast<double>(s));
    const double bc2 = 1.0 - std::pow(b2, static_cast<double>(s));
    p.push_back(params_[i]);
    g.push_back(grad);
    m.push_back(state_->exp_avg[i]);
    v.push_back(state_->exp_avg_sq[i]);
    step_size.emplace_back(-lr / bc1);
    bc2_sqrt.emplace_back(std::sqrt(bc2));
    if ((elements += params_[i].numel()) >= kForeachChunkElements) flush();
  }
  flush();
}

void AdamW::step_fused(double lr, const torch::Tensor& grad_div) {
#if PARTUNE_HAS_FUSED_ADAMW
  torch::NoGradGuard no_grad;
  // One call per (device, dtype): the kernel takes homogeneous lists.
  struct Lists {
    std::vector<torch::Tensor> p, g, m, v, steps;
  };
  std::map<std::pair<std::string, int>, Lists> groups;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& grad = params_[i].grad();
    if (!grad.defined()) continue;
    ++state_->steps[i];
    auto& l = groups[{params_[i].device().str(), static_cast<int>(params_[i].scalar_type())}];
    l.p.push_back(params_[i]);
    l.g.push_back(grad);
    l.m.push_back(state_->exp_avg[i]);
    l.v.push_back(state_->exp_avg_sq[i]);
    l.steps.push_back(state_->step_tensors[i]);
  }
  for (auto& [key, l] : groups) {
    at::_foreach_add_(l.steps, 1.0);  // the kernel reads the already-incremented step
    // The kernel divides each gradient by grad_scale (fp32, on the lists' device) as it reads it.
    const torch::Tensor div = grad_div.defined() ? grad_div.to(l.p.front().device(), torch::kFloat32) : torch::Tensor();
    compat::fused_adamw(l.p, l.g, l.m, l.v, l.steps, lr, opts_.beta1, opts_.beta2, opts_.weight_decay, opts_.eps, div);
  }
#else
  (void)lr, (void)grad_div;
  throw std::logic_error("fused AdamW needs LibTorch >= 2.4");
#endif
}

}  // namespace partune::trainer
