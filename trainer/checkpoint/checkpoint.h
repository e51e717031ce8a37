// Activation checkpointing for transformer blocks (torchtitan's
// [activation_checkpoint] modes none / full / selective every-Nth-layer).
//
// checkpoint() runs a block without keeping its activations: forward under no
// grad, saving only the block input; backward re-runs the block with grad
// enabled and backpropagates through the recomputed graph (the reentrant
// form). The block's parameters are passed in as inputs of the autograd
// function, so their gradients are accumulated like any other leaf's.
//
// Per-op selective AC (selective_ac_option "op", torchtitan v0.2.2's
// _apply_op_sac) is the same wrapper with an op cache: the block's forward
// records the outputs of the ops it marks as saved (saved_matmul,
// saved_op), and the recompute in backward takes them from the cache
// instead of running them again, so only the ops in between are recomputed.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace partune::trainer {

enum class ACMode { None, Full, Selective };

// selective: every_n is torchtitan's selective_ac_option "N": block i
// (0-based) is checkpointed when (i + 1) % N == 0; N == 0 checkpoints every
// block (as torchtitan's _apply_layer_sac). per_op: selective_ac_option
// "op", every block under per-op selective AC (every_n unused).
struct ACConfig {
  ACMode mode = ACMode::None;
  int every_n = 1;
  bool per_op = false;
};

// How one block runs: whole-block recompute, or per-op (saved ops cached).
enum class BlockAC { None, Full, PerOp };

// Whether block `layer_index` (0-based) runs under checkpoint() for this config.
bool should_checkpoint(const ACConfig& ac, int64_t layer_index);
BlockAC block_ac(const ACConfig& ac, int64_t layer_index);

using BlockFn = std::function<torch::Tensor(const torch::Tensor&)>;

// y = fn(input), recomputed in backward. `params` must hold every parameter
// fn reads (their gradients flow through this function). Outside grad mode,
// or when nothing requires grad, it is simply fn(input).
// per_op: per-op selective AC (the ops fn marks are cached, not recomputed).
torch::Tensor checkpoint(BlockFn fn, const torch::Tensor& input, const std::vector<torch::Tensor>& params,
                         bool per_op = false);

// The ops per-op selective AC saves. Outside a per-op checkpointed block
// they are plain calls. torchtitan v0.2.2's policy saves the outputs of
// attention and of every other aten.mm of a block (the 1st, 3rd, ...), the
// router gate's mm excepted (per_op_sac_force_recompute_mm_shapes_by_fqns,
// default ["moe.router.gate"]: recomputed and not counted); here:
//   saved_matmul  linear(x, w) (w [out, in], both in the compute dtype),
//                 counted by the every-other rule; a saved one keeps its
//                 output, and its recompute only rebuilds the backward
//                 (grad x = g w, grad w = g^T x) on the recomputed x.
//                 may_save = false: counted, never kept (the q/k/v
//                 projections, whose outputs the kept attention inputs
//                 already hold).
//   saved_op      fn(inputs) kept whole with its own graph (attention): the
//                 output and what fn's backward saves (for SDPA: q, k, v,
//                 output, log-sum-exp), where torchtitan keeps the wq and
//                 wv outputs and recomputes q, k, v from them.
torch::Tensor saved_matmul(const torch::Tensor& x, const torch::Tensor& w, bool may_save = true);
using OpFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;
torch::Tensor saved_op(const OpFn& fn, const std::vector<torch::Tensor>& inputs);

// True on this thread while a checkpointed block is being recomputed in
// backward. Side effects that must happen once per forward (the MoE's
// tokens_per_expert count) skip themselves then.
bool is_recomputing();

}  // namespace partune::trainer
