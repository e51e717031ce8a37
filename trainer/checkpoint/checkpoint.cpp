#include "trainer/checkpoint/checkpoint.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace partune::trainer {

namespace {

thread_local int recompute_depth = 0;

struct RecomputeScope {
  RecomputeScope() { ++recompute_depth; }
  ~RecomputeScope() { --recompute_depth; }
  RecomputeScope(const RecomputeScope&) = delete;
  RecomputeScope& operator=(const RecomputeScope&) = delete;
};

// Carries the block function and its parameters from forward to backward
// inside the autograd context (saved_data holds IValues; a capsule keeps the
// holder alive as long as the graph node).
struct BlockHolder : torch::CustomClassHolder {
  BlockHolder(BlockFn f, std::vector<torch::Tensor> p) : fn(std::move(f)), params(std::move(p)) {}
  BlockFn fn;
  std::vector<torch::Tensor> params;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // params are passed as a TensorList so that autograd sees them as inputs:
  // the node's outputs require grad through them, and the gradients returned
  // by backward are accumulated into their .grad.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               torch::TensorList params, c10::intrusive_ptr<BlockHolder> holder) {
    (void)params;  // same tensors as holder->params
    ctx->saved_data["block"] = c10::IValue::make_capsule(holder);
    ctx->save_for_backward({input});
    torch::NoGradGuard no_grad;
    return holder->fn(input);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const torch::Tensor saved_input = ctx->get_saved_variables().at(0);
    auto capsule = ctx->saved_data["block"].toCapsule();
    const auto& block = *static_cast<BlockHolder*>(capsule.get());
    const size_t num_params = block.params.size();

    torch::Tensor input = saved_input.detach();
    input.requires_grad_(saved_input.requires_grad());
    torch::Tensor output;
    {
      torch::AutoGradMode enable_grad(true);
      RecomputeScope scope;
      output = block.fn(input);
    }

    std::vector<torch::Tensor> wrt;
    std::vector<size_t> slot;  // result index: 0 the input, 1 + i params[i]
    if (input.requires_grad()) {
      wrt.push_back(input);
      slot.push_back(0);
    }
    for (size_t i = 0; i < num_params; ++i) {
      if (block.params[i].requires_grad()) {
        wrt.push_back(block.params[i]);
        slot.push_back(1 + i);
      }
    }
    // One gradient per forward input: the input, each parameter, the holder.
    torch::autograd::variable_list result(num_params + 2);
    if (!wrt.empty() && output.requires_grad()) {
      auto grads = torch::autograd::grad({output}, wrt, {grad_outputs.at(0)}, /*retain_graph=*/false,
                                         /*create_graph=*/false, /*allow_unused=*/true);
      for (size_t j = 0; j < grads.size(); ++j) result[slot[j]] = grads[j];
    }
    return result;
  }
};

}  // namespace

bool should_checkpoint(const ACConfig& ac, int64_t layer_index) {
  switch (ac.mode) {
    case ACMode::None:
      return false;
    case ACMode::Full:
      return true;
    case ACMode::Selective:
      if (ac.every_n < 0)
        throw std::invalid_argument("selective activation checkpointing: every_n must be >= 0, got " +
                                    std::to_string(ac.every_n));
      return ac.every_n == 0 || (layer_index + 1) % ac.every_n == 0;
  }
  return false;
}

torch::Tensor checkpoint(BlockFn fn, const torch::Tensor& input, const std::vector<torch::Tensor>& params) {
  bool needs_grad = torch::GradMode::is_enabled() && input.requires_grad();
  for (const auto& p : params) needs_grad = needs_grad || (torch::GradMode::is_enabled() && p.requires_grad());
  if (!needs_grad) return fn(input);
  auto holder = c10::make_intrusive<BlockHolder>(std::move(fn), params);
  return CheckpointFunction::apply(input, torch::TensorList(holder->params), holder);
}

bool is_recomputing() { return recompute_depth > 0; }

}  // namespace partune::trainer
