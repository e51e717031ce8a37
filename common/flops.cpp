#include "common/flops.h"

#include <array>
#include <string>

namespace partune {

ParamCounts count_params(const Flavor& f) {
  ParamCounts c;
  const int64_t q = f.n_heads * f.head_dim;
  const int64_t kv = f.n_kv_heads * f.head_dim;
  int64_t attention = f.dim * q + 2 * f.dim * kv + q * f.dim;  // wq, wk, wv, wo
  if (f.qk_norm) attention += 2 * f.head_dim;                  // q_norm, k_norm
  const int64_t block_norms = 2 * f.dim;                       // attention_norm, ffn_norm
  c.embedding = f.vocab_size * f.dim;
  const int64_t output = f.tie_embeddings ? 0 : f.vocab_size * f.dim;
  c.dense = c.embedding + output + f.dim /* final norm */ + f.n_layers * (attention + block_norms);
  if (f.moe) {
    c.router = f.n_layers * f.dim * f.num_experts;
    c.experts = f.n_layers * f.num_experts * 3 * f.dim * f.moe_inter_dim;
    c.shared_experts = f.n_layers * f.num_shared_experts * 3 * f.dim * f.moe_inter_dim;
    // torchtitan uses integer division here: experts * top_k // num_experts.
    c.active = c.dense + c.router + c.shared_experts + c.experts * f.top_k / f.num_experts;
  } else {
    c.dense += f.n_layers * 3 * f.dim * f.hidden_dim;
    c.active = c.dense;
  }
  return c;
}

double flops_per_token(const Flavor& f, int64_t seq_len) {
  const ParamCounts c = count_params(f);
  const double params = static_cast<double>(c.active - c.embedding);
  const double attention = 6.0 * static_cast<double>(f.n_layers) * static_cast<double>(f.n_heads) *
                           static_cast<double>(2 * f.head_dim) * static_cast<double>(seq_len);
  return 6.0 * params + attention;
}

std::optional<double> peak_flops_for_device(std::string_view name) {
  // torchtitan's get_peak_flops: matched by substrings of the device name.
  const std::string n(name);
  auto has = [&](const char* s) { return n.find(s) != std::string::npos; };
  if (has("A100")) return 312e12;
  if (has("H100")) {
    if (has("NVL")) return 835e12;
    if (has("PCIe")) return 756e12;
    return 989e12;  // SXM and other variants
  }
  if (has("H200")) return 989e12;
  if (has("H20")) return 148e12;
  if (has("B200")) return 2.25e15;
  return std::nullopt;
}

}  // namespace partune
