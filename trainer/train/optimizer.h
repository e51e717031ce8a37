// AdamW as torchtitan builds it (torch.optim.AdamW over every parameter, one
// weight decay for all), in the three implementations optimizer.implementation
// names. All three compute the same update:
//
//   step += 1
//   p     *= 1 - lr * weight_decay
//   m      = beta1 * m + (1 - beta1) * g
//   v      = beta2 * v + (1 - beta2) * g * g
//   p     -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
//
//   for-loop  LibTorch's torch::optim::AdamW: ~8 elementwise passes per tensor,
//             each a kernel launch. The reference the others are tested against.
//   foreach   the same passes over lists of tensors (multi-tensor kernels),
//             in chunks so the sqrt(v) temporary stays small.
//   fused     one kernel reads p, g, m, v once and writes p, m, v
//             (at::_fused_adamw_, LibTorch >= 2.4). On 30B-A3B's optimizer
//             state (GBs of fp32) the passes are memory-bound, so this is
//             several times less traffic than the other two.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace partune::trainer {

enum class AdamWImpl { ForLoop, Foreach, Fused };

// "for-loop" | "foreach" | "fused"; throws std::invalid_argument otherwise.
AdamWImpl parse_adamw_impl(const std::string& name);
std::string to_string(AdamWImpl impl);
// Whether this LibTorch has the fused kernel.
bool fused_adamw_available();
// The implementation a configured name runs as: "fused" where the kernel is
// missing runs foreach (same update, more passes); the others as named.
AdamWImpl resolve_adamw_impl(const std::string& name);

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  // Throws std::logic_error for Fused where fused_adamw_available() is false.
  AdamW(std::vector<torch::Tensor> params, const AdamWOptions& options, AdamWImpl impl);
  ~AdamW();
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One update with learning rate `lr` of every parameter that has a
  // gradient (the others keep their values and their state).
  void step(double lr);
  // The step with every gradient divided by grad_div (0-dim fp32, e.g.
  // clip_divisor): fused AdamW does it inside its kernel, the others with a
  // pass over the gradients first. Equal to dividing, then step(lr).
  void step(double lr, const torch::Tensor& grad_div);
  // Whether step(lr, grad_div) costs no extra pass over the gradients.
  bool divides_in_kernel() const { return impl_ == AdamWImpl::Fused; }
  // Gradients to none (the next backward allocates them afresh).
  void zero_grad();
  AdamWImpl impl() const { return impl_; }

 private:
  struct State;
  void step_foreach(double lr);
  void step_fused(double lr, const torch::Tensor& grad_div);

  std::vector<torch::Tensor> params_;
  AdamWOptions opts_;
  AdamWImpl impl_;
  std::unique_ptr<torch::optim::AdamW> loop_;  // for-loop
  std::unique_ptr<State> state_;               // foreach / fused
};

}  // namespace partune::trainer
