// Activation checkpointing for transformer blocks (torchtitan's
// [activation_checkpoint] modes none / full / selective every-Nth-layer).
//
// checkpoint() runs a block without keeping its activations: forward under no
// grad, saving only the block input; backward re-runs the block with grad
// enabled and backpropagates through the recomputed graph (the reentrant
// form). The block's parameters are passed in as inputs of the autograd
// function, so their gradients are accumulated like any other leaf's.
#pragma once
#include <functional>
#include <vector>

#include <torch/torch.h>

namespace partune::trainer {

enum class ACMode { None, Full, Selective };

// selective: every_n is torchtitan's selective_ac_option "N": block i
// (0-based) is checkpointed when (i + 1) % N == 0; N == 0 checkpoints every
// block (as torchtitan's _apply_layer_sac). The "op" option is not supported;
// the caller reports it as a config error.
struct ACConfig {
  ACMode mode = ACMode::None;
  int every_n = 1;
};

// Whether block `layer_index` (0-based) runs under checkpoint() for this config.
bool should_checkpoint(const ACConfig& ac, int64_t layer_index);

using BlockFn = std::function<torch::Tensor(const torch::Tensor&)>;

// y = fn(input), recomputed in backward. `params` must hold every parameter
// fn reads (their gradients flow through this function). Outside grad mode,
// or when nothing requires grad, it is simply fn(input).
torch::Tensor checkpoint(BlockFn fn, const torch::Tensor& input, const std::vector<torch::Tensor>& params);

// True on this thread while a checkpointed block is being recomputed in
// backward. Side effects that must happen once per forward (the MoE's
// tokens_per_expert count) skip themselves then.
bool is_recomputing();

}  // namespace partune::trainer
