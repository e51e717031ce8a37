#include "common/flavors.h"

#include <charconv>

namespace partune {

namespace {

Flavor dense(const char* name, int64_t vocab, int64_t dim, int64_t layers, int64_t heads, int64_t kv, int64_t hidden,
             bool tied, int64_t max_seq = 4096) {
  Flavor f;
  f.model = "qwen3";
  f.name = name;
  f.vocab_size = vocab;
  f.dim = dim;
  f.n_layers = layers;
  f.n_heads = heads;
  f.n_kv_heads = kv;
  f.head_dim = 128;
  f.hidden_dim = hidden;
  f.max_seq_len = max_seq;
  f.tie_embeddings = tied;
  return f;
}

Flavor moe(Flavor f, int64_t inter, int64_t experts, int64_t top_k) {
  f.moe = true;
  f.moe_inter_dim = inter;
  f.num_experts = experts;
  f.top_k = top_k;
  return f;
}

// torchtitan v0.2.2 torchtitan/models/qwen3/__init__.py (qwen3_args).
const std::vector<Flavor>& qwen3_table() {
  static const std::vector<Flavor> table = [] {
    std::vector<Flavor> t;
    t.push_back(dense("debugmodel", 2048, 256, 8, 16, 8, 3072, true));
    t.push_back(dense("0.6B", 151936, 1024, 28, 16, 8, 3072, true));
    t.push_back(dense("1.7B", 151936, 2048, 28, 16, 8, 6144, true));
    t.push_back(dense("4B", 151936, 2560, 36, 32, 8, 9728, true));
    t.push_back(dense("8B", 151936, 4096, 36, 32, 8, 12288, false));
    t.push_back(dense("14B", 151936, 5120, 40, 40, 8, 17408, false));
    t.push_back(dense("32B", 151936, 5120, 64, 64, 8, 25600, false));
    t.push_back(moe(dense("debugmodel_moe", 2048, 256, 8, 16, 8, 3072, false), 768, 64, 8));
    t.push_back(moe(dense("30B-A3B", 151936, 2048, 48, 32, 4, 6144, false, 262144), 768, 128, 8));
    Flavor big = moe(dense("235B-A22B", 151936, 4096, 94, 64, 4, 12288, false), 1536, 128, 8);
    big.rope_theta = 5e6;
    t.push_back(big);
    // partune-only flavors (not in torchtitan): Qwen3 geometry shrunk for CPU
    // tests and studies of the multi-process trainer (dim 32, 2 layers, 4 heads,
    // 2 kv heads, head_dim 8, vocab 64; the MoE one with 8 experts, top 2).
    Flavor tiny = dense("tiny", 64, 32, 2, 4, 2, 64, false, 1024);
    tiny.head_dim = 8;
    t.push_back(tiny);
    Flavor tiny_moe = moe(tiny, 16, 8, 2);
    tiny_moe.name = "tiny_moe";
    t.push_back(tiny_moe);
    return t;
  }();
  return table;
}

}  // namespace

std::vector<std::string> model_names() { return {"qwen3"}; }

std::vector<std::string> flavor_names(std::string_view model) {
  std::vector<std::string> names;
  if (model != "qwen3") return names;
  for (const auto& f : qwen3_table()) names.push_back(f.name);
  return names;
}

std::optional<Flavor> find_flavor(std::string_view model, std::string_view name) {
  if (model != "qwen3") return std::nullopt;
  for (const auto& f : qwen3_table())
    if (f.name == name) return f;
  // "<flavor>-L<n>": the same geometry with n layers (reduced depth).
  auto pos = name.rfind("-L");
  if (pos == std::string_view::npos || pos + 2 >= name.size()) return std::nullopt;
  int64_t layers = 0;
  auto digits = name.substr(pos + 2);
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layers);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || layers < 1) return std::nullopt;
  auto base = find_flavor(model, name.substr(0, pos));
  if (!base || layers > base->n_layers) return std::nullopt;  // reduced depth only
  base->name = std::string(name);
  base->n_layers = layers;
  return base;
}

}  // namespace partune
