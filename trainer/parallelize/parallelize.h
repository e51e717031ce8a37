// Parallelism as named passes over a built, initialised Qwen3 model, in
// torchtitan v0.2.2's order (parallelize_qwen3): tensor parallelism, expert
// parallelism / expert tensor parallelism, activation checkpointing, FSDP.
// The model itself stays free of collectives: passes swap in sharded modules
// and set its hooks (trainer/model/hooks.h).
//
//   apply_tensor_parallel   attention: wq/wk/wv by output rows (whole heads), wo by input
//                           columns; dense FFN: w1/w3 by rows, w2 by columns; the block's
//                           TensorParallelHooks (enter: grad all-reduce, exit: all-reduce).
//                           q_norm/k_norm stay replicated; their gradients are partial over
//                           TP (each rank sees its heads) and are summed in finish_gradients.
//   apply_expert_parallel   experts split over EP (AllToAllDispatcher), and:
//                           ETP = TP (or EP = 1 with TP > 1): each expert's hidden dim is
//                             sharded over TP (w1/w3 rows, w2 columns); the MoE sits inside
//                             TP hooks like the dense FFN (outputs are partial sums).
//                           ETP = 1 with TP > 1 (EP borrows TP): the TP ranks hold the same
//                             tokens, so each routes its own 1/TP of the rows (enter: grad
//                             all-reduce, then take the slice); exit puts the slice in a zero
//                             [rows, dim] tensor and all-reduces it over TP (sum of disjoint
//                             slices: exact), identity backward.
//                           With TP > 1 the router's gate gradient is partial over TP (gates
//                           multiply partial expert outputs, or a slice of the tokens) and is
//                           summed in finish_gradients.
//   apply_activation_checkpointing, apply_compile  how blocks run (model_passes.h).
//   apply_loss_parallel     parallelism.disable_loss_parallel = false (torchtitan's default) with
//                           TP > 1 and the fused loss (compile.enable): the output weight split
//                           by vocabulary rows over TP, the loss combined over the slices
//                           (LossParallelHooks); the hidden states' gradient summed over TP.
//                           Eager, tied embeddings or a vocabulary TP does not divide: the
//                           replicated output and logits.
//   apply_fsdp              every parameter becomes a flat shard (padded to a multiple of the
//                           group size) that the optimizer owns: dense parameters over the
//                           fsdp group (dp_shard x cp), expert weights over efsdp. Before a
//                           block runs, its parameters are all-gathered (an autograd function
//                           whose backward reduce-scatters the gradient in float32); after it,
//                           the module slots point at the shards again. Embeddings, final norm
//                           and output form the root unit (gathered for the whole forward).
//                           reshard_after_forward (torchtitan v0.2.2 without PP: "default" and
//                           "always" reshard every block, "never" none): a block that does not
//                           reshard keeps its gathered weights until the optimizer step, so an
//                           activation-checkpoint recompute (and the next microbatch) reuses
//                           them instead of gathering again.
//                           Without AC, autograd keeps the gathered weights it saved for
//                           backward in any case (there are no saved-tensor hooks in C++), so
//                           resharding only saves memory for checkpointed blocks.
//   dp_replicate            gradients all-reduced over dp_replicate (finish_gradients).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "trainer/model/init.h"
#include "trainer/model/model.h"
#include "trainer/parallel/distributed.h"
#include "trainer/parallelize/model_passes.h"

namespace partune::trainer {

class FsdpState;

// What the passes leave behind for the training step.
struct ParallelModelState {
  ProcessGroups groups;
  GroupPtr world;
  // Parameters whose local gradient is a partial sum over `group` (summed in finish_gradients).
  struct PartialGrad {
    torch::Tensor param;
    GroupPtr group;
  };
  std::vector<PartialGrad> partial_grads;
  // Parameters TP-sharded (distinct on each TP rank); all others are replicated over TP,
  // except expert weights, which are distinct on every rank of the sparse mesh.
  std::vector<torch::Tensor> tp_sharded;
  std::vector<torch::Tensor> expert_params;
  // MoE tokens differ over TP (ETP = 1 with TP > 1): token counts are summed over TP too.
  bool moe_tokens_split_over_tp = false;
  std::shared_ptr<FsdpState> fsdp;  // null when no parameter is sharded
  // Which elements of each global parameter this rank holds (parameters not
  // listed are held whole): what materialize() draws for a model built
  // without storage.
  ShardViews views;

  // Step support, in grad_sync.cpp.
  // After the last microbatch's backward: partial sums over TP, then the
  // all-reduce over dp_replicate. Gathered weights kept by blocks that do not
  // reshard are dropped (the optimizer is about to change the shards).
  void finish_gradients(const std::vector<torch::Tensor>& params);
  // Global L2 norm over every parameter's gradient (each element counted
  // once: shards summed, replicas not), 0-dim fp32.
  torch::Tensor grad_norm(const std::vector<torch::Tensor>& params) const;
  // grad_norm, then the clipping of torch.nn.utils.clip_grad_norm_ applied
  // to the gradients. Returns the pre-clip norm.
  torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) const;
  // Sum of per-layer expert token counts over the ranks that saw different tokens.
  torch::Tensor all_reduce_expert_counts(const torch::Tensor& counts) const;
};

// torch.nn.utils.clip_grad_norm_'s scaling, given the total norm: every
// defined gradient times min(1, max_norm / (total + 1e-6)), without a host sync.
void clip_gradients_to(const std::vector<torch::Tensor>& params, const torch::Tensor& total, double max_norm);
// The same scaling as a divisor, max(1, (total + 1e-6) / max_norm), 0-dim
// fp32 on total's device: for an optimizer that unscales the gradients in
// its own pass (fused AdamW's grad_scale), saving a pass over all of them.
torch::Tensor clip_divisor(const torch::Tensor& total, double max_norm);

struct ParallelizeOptions {
  ACConfig ac;
  std::string reshard_after_forward = "default";  // default | always | never
  torch::Dtype param_dtype = torch::kFloat32;     // dtype FSDP gathers in (the compute dtype)
  CompileOptions compile;                         // compile.*: apply_compile
  bool loss_parallel = true;                      // not parallelism.disable_loss_parallel
};

void apply_tensor_parallel(Qwen3Model& model, ParallelModelState& state);  // tensor_parallel.cpp
void apply_expert_parallel(Qwen3Model& model, ParallelModelState& state);
void apply_fsdp(Qwen3Model& model, ParallelModelState& state, const std::string& reshard_after_forward,
                torch::Dtype param_dtype);
// loss_parallel.cpp; loss_parallel_applies: whether it changes this model.
bool loss_parallel_applies(const Qwen3Model& model, int64_t tp, bool enabled);
void apply_loss_parallel(Qwen3Model& model, ParallelModelState& state, bool enabled);

// All passes in order. The model must be the full model, on the groups'
// device: initialised (the passes copy each rank's shards out of it), or
// built without storage (the passes only shape the shards; materialize()
// with the state's views then draws them). Afterwards model->parameters()
// are the local shards.
std::shared_ptr<ParallelModelState> parallelize(Qwen3Model& model, const ProcessGroups& groups, GroupPtr world,
                                                const ParallelizeOptions& options);

}  // namespace partune::trainer
