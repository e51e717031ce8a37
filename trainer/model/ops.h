// The model's functional pieces: norms, RoPE, attention, experts and the
// loss, each with its reference composition and, where LibTorch has one, its
// fast path. The modules (model.h) call them; the tests use the references
// as oracles. Row permutations for MoE routing: routing.h.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace partune::trainer {

// fp32 (or fp64) for reductions: half types are upcast, float/double kept.
torch::Dtype accum_dtype(torch::Dtype t);

// t in dtype dt (t itself when it already is).
inline torch::Tensor cast(const torch::Tensor& t, torch::Dtype dt) { return t.scalar_type() == dt ? t : t.to(dt); }
// The compiled memory mode's cast of a parameter: cast() forward; on CUDA
// with LibTorch >= 2.4 its backward converts the gradient back to the
// parameter's dtype through at::_foreach_copy_'s vectorized kernel, where
// .to()'s backward takes the dynamic-cast copy (bf16 -> fp32 expert
// gradients were 15 ms of a 200 ms 30B-A3B-L4 step on an H200, ~1.2 TB/s).
// Same values (a dtype conversion is exact or rounds the same way); cast()
// elsewhere.
torch::Tensor cast_parameter(const torch::Tensor& t, torch::Dtype dt);

// y = x * rsqrt(mean(x^2, -1) + eps) * weight, computed in accum_dtype, returned in x's dtype.
// Reference: five elementwise/reduction ops (and as many saved tensors).
torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// at::rms_norm where this LibTorch has it (>= 2.4), on CUDA: the same fp32
// math, one fused kernel each way in recent releases (6.7x faster than the
// reference on H100 at [2, 4096, 2048], torch 2.11). The reference elsewhere.
bool fused_rms_norm_available();
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// The compiled memory mode's RMSNorm: where rms_norm() runs at::rms_norm, it
// runs it on x in x's own dtype with the weight cast to it (the kernel
// still computes in fp32; the weight is rounded to x's dtype, as FSDP's
// mixed precision gathers it in torchtitan), so autograd saves x and the
// fp32 rstd instead of an fp32 copy of a bf16 x. rms_norm() elsewhere.
torch::Tensor rms_norm_compiled(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// [seq_len, 2 * head_dim] fp32: cos then sin of the rotate-half RoPE angles
// (torchtitan's precompute_rope_cache).
torch::Tensor precompute_rope_cache(int64_t head_dim, int64_t seq_len, double theta);

// x [B, S, H, head_dim]; rope_cache has at least S rows. Rotate-half RoPE in x's dtype.
torch::Tensor apply_rotary_emb(const torch::Tensor& x, const torch::Tensor& rope_cache);

// Causal attention, q [B, Hq, S, D], k/v [B, Hkv, S, D] with Hq % Hkv == 0
// (GQA: query head h reads kv head h / (Hq / Hkv)), scale D^-0.5 -> [B, Hq, S, D].
// Reference: repeat_interleave + matmul + fp32 softmax.
torch::Tensor causal_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
// SDPA (is_causal, enable_gqa) where this LibTorch has it (>= 2.5).
bool sdpa_available();
torch::Tensor causal_attention_sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// SwiGLU experts over rows grouped by expert: counts[e] rows for local expert
// e. w1/w3 [E, hidden, dim], w2 [E, dim, hidden], already in compute dtype.
// fused: the gate through swiglu() (fused_elementwise.h), else silu(a) * b.
torch::Tensor experts_reference(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& w2,
                                const torch::Tensor& w3, const std::vector<int64_t>& counts, bool fused = false);
// at::_grouped_mm where built (>= 2.8): CUDA, bf16, dim and hidden multiples of 8.
bool grouped_mm_usable(const torch::Tensor& x, const torch::Tensor& w1);
torch::Tensor experts_grouped_mm(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& w2,
                                 const torch::Tensor& w3, const std::vector<int64_t>& counts, bool fused = false);

// Row permutations for MoE routing (permute_rows, gather_token_rows): routing.h.

// Mean cross-entropy over tokens whose label is not -100 (torchtitan's
// IGNORE_INDEX), in fp32 (fp64 for fp64 logits). logits [B, S, V], labels [B, S] int64.
torch::Tensor cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace partune::trainer
