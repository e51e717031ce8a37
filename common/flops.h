// Parameter counts and FLOPs per token exactly as torchtitan v0.2.2 computes
// them (get_moe_model_nparams_and_flops / get_dense_model_nparams_and_flops),
// and the bf16 dense peak-FLOPS table used for MFU.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "common/flavors.h"

namespace partune {

struct ParamCounts {
  int64_t embedding = 0;       // tok_embeddings (counted once when tied)
  int64_t dense = 0;           // every non-MoE parameter, embedding included
  int64_t router = 0;          // moe.router
  int64_t shared_experts = 0;  // moe.shared_experts
  int64_t experts = 0;         // moe.experts (all experts)
  int64_t total() const { return dense + router + shared_experts + experts; }
  // dense + router + shared + experts * top_k / num_experts
  int64_t active = 0;
};

// Counts computed from the flavor's shapes (no model is built).
ParamCounts count_params(const Flavor& f);

// 6 * (dense - embedding + active sparse) + 6 * n_layers * n_heads * 2*head_dim * seq_len.
// Causal masking is not discounted (torchtitan's convention).
double flops_per_token(const Flavor& f, int64_t seq_len);

// bf16 dense peak FLOP/s for a device name as reported by the driver
// ("NVIDIA H100 80GB HBM3", "NVIDIA H200", ...); nullopt when unknown.
std::optional<double> peak_flops_for_device(std::string_view device_name);

}  // namespace partune
