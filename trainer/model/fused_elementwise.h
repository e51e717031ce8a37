// Elementwise chains of the MoE and FFN blocks as single autograd functions
// that save only what their backward needs and recompute the rest, as a
// compiled graph does (inductor fuses the chain and its partitioner keeps the
// inputs, not the intermediates). Used when compile.enable selects the
// compiled memory mode (apply_compile); each has its reference in the eager
// composition it replaces, and a test comparing the two.
#pragma once
#include <torch/torch.h>

namespace partune::trainer {

// silu(a) * b (the SwiGLU gate), a and b of one shape and dtype. Eager
// autograd saves a, silu(a) and b; this saves a and b and recomputes
// silu(a) in backward (otherwise eager's backward: the same values).
torch::Tensor swiglu(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor swiglu_reference(const torch::Tensor& a, const torch::Tensor& b);

// Gate-weighted sum of each token's k expert outputs: gates [n, k] in
// accum dtype (fp32 / fp64), y [n, k, dim] in the compute dtype ->
// [n, dim] in the gates' dtype. The eager form (bmm over an upcast copy of y)
// saves that accum-dtype copy for the gates' gradient; this saves y in its
// own dtype (half the bytes in bf16) and upcasts in backward.
torch::Tensor weighted_expert_sum(const torch::Tensor& gates, const torch::Tensor& y);

// Rotate-half RoPE (apply_rotary_emb in ops.h is the reference) written as
// the rotation it is: out = (x1 cos - x2 sin, x2 cos + x1 sin), two
// multiply-adds per half straight into the output, and its backward the
// rotation by the opposite angle. The eager form negates, concatenates, and
// multiplies and adds whole tensors (about twice the memory traffic); a
// compiled graph fuses it. Needs the cache's cos and sin halves equal, as
// precompute_rope_cache makes them.
torch::Tensor rotary_emb(const torch::Tensor& x, const torch::Tensor& rope_cache);
torch::Tensor weighted_expert_sum_reference(const torch::Tensor& gates, const torch::Tensor& y);

}  // namespace partune::trainer
