// Differences between the two LibTorch builds the trainer compiles against:
// Debian's 1.13 (CPU machines, CI) and pip torch 2.x (GPU nodes). Every
// version #if in the trainer lives here.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#define PARTUNE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// at::scaled_dot_product_attention with enable_gqa (public since 2.0, GQA since 2.5).
#define PARTUNE_HAS_SDPA_GQA PARTUNE_TORCH_AT_LEAST(2, 5)
// at::_grouped_mm (2-D x 3-D with int32 offsets, bf16 on sm90) since 2.8.
#define PARTUNE_HAS_GROUPED_MM PARTUNE_TORCH_AT_LEAST(2, 8)
// KinetoEvent::startUs()/durationUs() (1.x; 2.x reports startNs/durationNs). Used only by
// trainer/train/profiler.cpp's trace writer for LibTorch builds without Kineto (Debian's
// 1.13, whose ProfilerResult::save() refuses); pip torch 2.x has Kineto and saves itself.
#define PARTUNE_HAS_KINETO_EVENT_US (!PARTUNE_TORCH_AT_LEAST(2, 0))
// at::rms_norm since 2.4 (a fused CUDA kernel when input and weight share a dtype, in recent releases).
#define PARTUNE_HAS_RMS_NORM PARTUNE_TORCH_AT_LEAST(2, 4)
// at::_fused_adamw_ on CUDA (2.0) and on the CPU (2.4): 2.4 so that both run it.
#define PARTUNE_HAS_FUSED_ADAMW PARTUNE_TORCH_AT_LEAST(2, 4)
// at::_foreach_copy_ with a multi-tensor CUDA kernel that converts dtypes as it copies (2.4, as FSDP2 uses it).
#define PARTUNE_HAS_FOREACH_COPY PARTUNE_TORCH_AT_LEAST(2, 4)

namespace partune::trainer::compat {

// Stable sort indices; the argument order of argsort(stable) is the same in
// 1.13 and 2.x, sort(stable) is used because its overload is unambiguous.
inline torch::Tensor stable_argsort(const torch::Tensor& t) {
  return std::get<1>(t.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
}

// Causal attention with GQA through SDPA. Only callable where built.
#if PARTUNE_HAS_SDPA_GQA
inline torch::Tensor sdpa_causal_gqa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     double scale) {
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true, scale,
                                          /*enable_gqa=*/q.size(1) != k.size(1));
}
#endif

#if PARTUNE_HAS_GROUPED_MM
// x [M, K] bf16, w [G, K, N] (any strides _grouped_mm accepts), offs int32
// cumulative group ends on x's device -> [M, N].
inline torch::Tensor grouped_mm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& offs) {
  return at::_grouped_mm(x, w, offs);
}
#endif

#if PARTUNE_HAS_RMS_NORM
// RMSNorm over the last dim of x; x and weight of one dtype.
inline torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return at::rms_norm(x, {x.size(-1)}, weight, eps);
}
#endif

#if PARTUNE_HAS_FUSED_ADAMW
// One fused AdamW update over homogeneous lists; `steps` (0-dim fp32 on the
// params' device) already incremented. No amsgrad, no maximize, no grad scaling.
inline void fused_adamw(torch::TensorList params, torch::TensorList grads, torch::TensorList exp_avgs,
                        torch::TensorList exp_avg_sqs, torch::TensorList steps, double lr, double beta1, double beta2,
                        double weight_decay, double eps, const torch::Tensor& grad_scale) {
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2, weight_decay,
                    eps, /*amsgrad=*/false, /*maximize=*/false,
                    grad_scale.defined() ? std::optional<at::Tensor>(grad_scale) : std::nullopt);
}
#endif

#if PARTUNE_HAS_FOREACH_COPY
// dst <- src converted to dst's dtype; same sizes and strides (else LibTorch
// falls back to a per-tensor copy_).
inline void foreach_copy(const torch::Tensor& dst, const torch::Tensor& src) { at::_foreach_copy_({dst}, {src}); }
#endif

}  // namespace partune::trainer::compat
