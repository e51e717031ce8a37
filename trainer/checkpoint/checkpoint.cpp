#include "trainer/checkpoint/checkpoint.h"

#include <memory>
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

// One op of a per-op checkpointed block, as its forward ran it.
struct CachedOp : torch::CustomClassHolder {
  bool saved = false;
  torch::Tensor out;                  // the saved output (saved_op: the root of its kept graph)
  std::vector<torch::Tensor> leaves;  // saved_op: the kept graph's inputs
};

// The ops of one block run, in order: recorded by the forward, replayed (in
// the same order: the recompute runs the same code) by the recompute.
struct OpCache {
  bool replay = false;
  std::vector<c10::intrusive_ptr<CachedOp>> ops;
  size_t next = 0;
  int64_t matmuls = 0;
};

thread_local OpCache* active_cache = nullptr;

struct CacheScope {
  CacheScope(OpCache* c, bool replay) : prev(active_cache) {
    if (c != nullptr) {
      c->replay = replay;
      c->next = 0;
    }
    active_cache = c;
  }
  ~CacheScope() { active_cache = prev; }
  CacheScope(const CacheScope&) = delete;
  CacheScope& operator=(const CacheScope&) = delete;
  OpCache* prev;
};

// Carries the block function and its parameters from forward to backward
// inside the autograd context (saved_data holds IValues; a capsule keeps the
// holder alive as long as the graph node).
struct BlockHolder : torch::CustomClassHolder {
  BlockHolder(BlockFn f, std::vector<torch::Tensor> p, bool per_op)
      : fn(std::move(f)), params(std::move(p)), cache(per_op ? std::make_unique<OpCache>() : nullptr) {}
  BlockFn fn;
  std::vector<torch::Tensor> params;
  std::unique_ptr<OpCache> cache;  // per-op selective AC only
};

// A saved matmul in the recompute: the cached output, with linear's backward
// on the recomputed input.
struct LinearReplay : torch::autograd::Function<LinearReplay> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               c10::intrusive_ptr<CachedOp> op) {
    ctx->save_for_backward({x, w});
    torch::Tensor out = std::move(op->out);  // the graph owns it from here
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto g = grads[0].reshape({-1, w.size(0)});
    torch::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) gx = g.mm(w).view(x.sizes());
    if (ctx->needs_input_grad(1)) gw = g.t().mm(x.reshape({-1, w.size(1)}));
    return {gx, gw, torch::Tensor()};
  }
};

// A saved op in the recompute: the cached output; backward runs the kept graph.
struct KeptReplay : torch::autograd::Function<KeptReplay> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::TensorList inputs,
                               c10::intrusive_ptr<CachedOp> op) {
    (void)inputs;  // the kept graph's leaves stand for them
    ctx->saved_data["op"] = c10::IValue::make_capsule(op);
    // The cached values in a new tensor over the same storage: a detach()
    // view would make autograd treat the output as non-differentiable.
    const torch::Tensor& kept = op->out;
    return torch::empty({0}, kept.options()).set_(kept.storage(), kept.storage_offset(), kept.sizes(), kept.strides());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto capsule = ctx->saved_data["op"].toCapsule();
    auto& op = *static_cast<CachedOp*>(capsule.get());
    std::vector<torch::Tensor> wrt;
    std::vector<size_t> slot;
    for (size_t i = 0; i < op.leaves.size(); ++i) {
      if (ctx->needs_input_grad(i) && op.leaves[i].requires_grad()) {
        wrt.push_back(op.leaves[i]);
        slot.push_back(i);
      }
    }
    torch::autograd::variable_list result(op.leaves.size() + 1);
    if (!wrt.empty()) {
      auto g = torch::autograd::grad({op.out}, wrt, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
      for (size_t j = 0; j < g.size(); ++j) result[slot[j]] = g[j];
    }
    op.out = torch::Tensor();  // the kept graph goes with it
    op.leaves.clear();
    return result;
  }
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
    CacheScope record(holder->cache.get(), /*replay=*/false);
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
      CacheScope replay(block.cache.get(), /*replay=*/true);
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
    if (block.cache) block.cache->ops.clear();
    return result;
  }
};

}  // namespace

bool should_checkpoint(const ACConfig& ac, int64_t layer_index) { return block_ac(ac, layer_index) != BlockAC::None; }

BlockAC block_ac(const ACConfig& ac, int64_t layer_index) {
  switch (ac.mode) {
    case ACMode::None:
      return BlockAC::None;
    case ACMode::Full:
      return BlockAC::Full;
    case ACMode::Selective:
      if (ac.per_op) return BlockAC::PerOp;
      if (ac.every_n < 0)
        throw std::invalid_argument("selective activation checkpointing: every_n must be >= 0, got " +
                                    std::to_string(ac.every_n));
      return ac.every_n == 0 || (layer_index + 1) % ac.every_n == 0 ? BlockAC::Full : BlockAC::None;
  }
  return BlockAC::None;
}

torch::Tensor checkpoint(BlockFn fn, const torch::Tensor& input, const std::vector<torch::Tensor>& params,
                         bool per_op) {
  bool needs_grad = torch::GradMode::is_enabled() && input.requires_grad();
  for (const auto& p : params) needs_grad = needs_grad || (torch::GradMode::is_enabled() && p.requires_grad());
  if (!needs_grad) return fn(input);
  auto holder = c10::make_intrusive<BlockHolder>(std::move(fn), params, per_op);
  return CheckpointFunction::apply(input, torch::TensorList(holder->params), holder);
}

torch::Tensor saved_matmul(const torch::Tensor& x, const torch::Tensor& w, bool may_save) {
  OpCache* c = active_cache;
  if (c == nullptr) return torch::linear(x, w);
  if (!c->replay) {
    auto op = c10::make_intrusive<CachedOp>();
    op->saved = ++c->matmuls % 2 == 1 && may_save;  // the 1st, 3rd, ... of the block
    auto out = torch::linear(x, w);
    if (op->saved) op->out = out;
    c->ops.push_back(std::move(op));
    return out;
  }
  TORCH_CHECK(c->next < c->ops.size(), "per-op activation checkpointing: the recompute ran more saved ops (",
              c->next + 1, ") than the forward (", c->ops.size(), ")");
  auto op = c->ops[c->next++];
  if (!op->saved) return torch::linear(x, w);
  return LinearReplay::apply(x, w, op);
}

torch::Tensor saved_op(const OpFn& fn, const std::vector<torch::Tensor>& inputs) {
  OpCache* c = active_cache;
  if (c == nullptr) return fn(inputs);
  if (!c->replay) {
    auto op = c10::make_intrusive<CachedOp>();
    op->saved = true;
    for (const auto& t : inputs) op->leaves.push_back(t.detach().requires_grad_(t.is_floating_point()));
    {
      torch::AutoGradMode enable_grad(true);  // the op's own graph, kept until the block's backward
      op->out = fn(op->leaves);
    }
    auto out = op->out.detach();
    c->ops.push_back(std::move(op));
    return out;
  }
  TORCH_CHECK(c->next < c->ops.size(), "per-op activation checkpointing: the recompute ran more saved ops (",
              c->next + 1, ") than the forward (", c->ops.size(), ")");
  auto op = c->ops[c->next++];
  // TensorList, not the vector: only a TensorList argument counts as inputs of the autograd node.
  return KeptReplay::apply(torch::TensorList(inputs), op);
}

bool is_recomputing() { return recompute_depth > 0; }

}  // namespace partune::trainer
