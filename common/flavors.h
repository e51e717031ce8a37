// The model flavor table: one source of truth for the tuner's planner and the
// trainer's model. Values match torchtitan v0.2.2 (torchtitan/models/qwen3).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace partune {

struct Flavor {
  std::string model;  // "qwen3"
  std::string name;   // "30B-A3B", or "30B-A3B-L6" for a reduced-depth variant
  int64_t vocab_size = 0;
  int64_t dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t hidden_dim = 0;  // dense SwiGLU hidden size (dense flavors)
  int64_t max_seq_len = 0;
  double rope_theta = 1e6;
  double norm_eps = 1e-6;
  bool qk_norm = true;
  bool tie_embeddings = false;
  // MoE (all layers are MoE when moe is true)
  bool moe = false;
  int64_t moe_inter_dim = 0;
  int64_t num_experts = 0;
  int64_t num_shared_experts = 0;
  int64_t top_k = 0;
  bool route_norm = true;            // renormalise the top-k scores
  double load_balance_coeff = 1e-3;  // expert-bias update rate (aux-loss-free)
};

// Looks a flavor up. A name of the form "<flavor>-L<n>" (e.g. "30B-A3B-L6") is
// the registered flavor with n_layers = n, 1 <= n <= its layers: the documented
// reduced-depth variant for benchmarks on 1-2 GPUs. Returns nullopt for
// unknown names and depths outside that range.
std::optional<Flavor> find_flavor(std::string_view model, std::string_view name);

// Registered flavor names of a model, table order; empty for an unknown model.
std::vector<std::string> flavor_names(std::string_view model);

// Model names with a flavor table ("qwen3").
std::vector<std::string> model_names();

}  // namespace partune
