#include "trainer/model/init.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <stdexcept>

#include "trainer/model/model.h"

namespace partune::trainer {

namespace {

// The 64-bit constants as the int64 the tensor ops work in (two's
// complement; tensor multiplication wraps modulo 2^64 on every backend).
constexpr int64_t s64(uint64_t v) { return static_cast<int64_t>(v); }
constexpr int64_t kGolden = s64(0x9e3779b97f4a7c15ULL);
constexpr int64_t kMix1 = s64(0xbf58476d1ce4e5b9ULL);
constexpr int64_t kMix2 = s64(0x94d049bb133111ebULL);

// Logical right shift of int64 (the arithmetic shift, high bits masked off).
torch::Tensor lsr(const torch::Tensor& z, int k) {
  return torch::bitwise_right_shift(z, k).bitwise_and_(s64((~0ULL) >> k));
}

// Positions [p0, p0 + n) of the view's box, flattened row-major -> row-major
// indices in the global tensor (int64 on `device`).
torch::Tensor global_indices(const ShardView& v, int64_t p0, int64_t n, torch::Device device) {
  auto p = torch::arange(p0, p0 + n, torch::TensorOptions().dtype(torch::kInt64).device(device));
  if (v.begin.empty() || v.size == v.global_shape) return p;  // the whole tensor: the same order
  auto g = torch::zeros_like(p);
  int64_t stride = 1;
  for (int64_t d = static_cast<int64_t>(v.size.size()) - 1; d >= 0; --d) {
    auto j = p.remainder(v.size[d]);
    p = p.div(v.size[d], "floor");
    g.add_((j + v.begin[d]) * stride);
    stride *= v.global_shape[d];
  }
  return g;
}

double norm_cdf(double v) { return (1.0 + std::erf(v / std::sqrt(2.0))) / 2.0; }

// Values of the elements at `idx` under `rule`, float64.
torch::Tensor draw(const InitRule& rule, uint64_t key_seed, const torch::Tensor& idx) {
  auto u = counter_uniform(key_seed, idx);
  if (rule.kind == InitRule::Kind::Normal) return u.mul_(2.0).sub_(1.0).erfinv_().mul_(rule.std * std::sqrt(2.0));
  // trunc_normal_: uniform in [2 cdf(a/std) - 1, 2 cdf(b/std) - 1], erfinv, scale, clamp.
  const double l = norm_cdf(rule.a / rule.std), h = norm_cdf(rule.b / rule.std);
  return u.mul_(2 * h - 2 * l).add_(2 * l - 1).erfinv_().mul_(rule.std * std::sqrt(2.0)).clamp_(rule.a, rule.b);
}

// Elements drawn per tensor op: bounds the temporaries (a few int64/float64
// tensors of this many elements). On a GPU large, to run at memory
// bandwidth; on the CPU 2^16 per thread, so that each op's operands stay in
// cache (15-20% faster than 2^20 on one thread) while every thread still
// gets a share.
int64_t chunk_elements(torch::Device d) {
  return d.is_cuda() ? (int64_t{1} << 26) : (int64_t{1} << 16) * std::max(1, at::get_num_threads());
}

const std::string kLayer = R"(layers\.(\d+)\.)";

}  // namespace

// ---------------------------------------------------------------- ShardView

ShardView ShardView::whole(c10::IntArrayRef shape) {
  ShardView v;
  v.global_shape = shape.vec();
  v.begin.assign(shape.size(), 0);
  v.size = shape.vec();
  return v;
}

ShardView ShardView::chunk(int64_t dim, int64_t parts, int64_t index) const {
  TORCH_CHECK(flat_size < 0, "ShardView::chunk on a flat view");
  TORCH_CHECK(dim >= 0 && dim < static_cast<int64_t>(size.size()) && size[dim] % parts == 0, "ShardView::chunk: dim ",
              dim, " of size ", dim < static_cast<int64_t>(size.size()) ? size[dim] : -1, " into ", parts, " parts");
  ShardView v = *this;
  v.size[dim] = size[dim] / parts;
  v.begin[dim] = begin[dim] + index * v.size[dim];
  return v;
}

ShardView ShardView::flat(int64_t start, int64_t count) const {
  TORCH_CHECK(flat_size < 0, "ShardView::flat on a flat view");
  ShardView v = *this;
  v.flat_begin = start;
  v.flat_size = count;
  return v;
}

int64_t ShardView::box_numel() const {
  int64_t n = 1;
  for (int64_t s : size) n *= s;
  return n;
}

std::vector<int64_t> ShardView::local_shape() const {
  if (flat_size >= 0) return {flat_size};
  return size;
}

// ---------------------------------------------------------------- generator

uint64_t tensor_seed(uint64_t seed, const std::string& key) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ULL;
  uint64_t z = seed ^ (h + 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

torch::Tensor counter_uniform(uint64_t key_seed, const torch::Tensor& idx) {
  torch::NoGradGuard no_grad;
  // splitmix64: state_i = key + (i + 1) * golden, then the finaliser.
  auto z = (idx + 1).mul_(kGolden).add_(s64(key_seed));
  z.bitwise_xor_(lsr(z, 30)).mul_(kMix1);
  z.bitwise_xor_(lsr(z, 27)).mul_(kMix2);
  z.bitwise_xor_(lsr(z, 31));
  // The top 53 bits, centred in their cell: strictly inside (0, 1).
  return lsr(z, 11).to(torch::kFloat64).add_(0.5).mul_(std::ldexp(1.0, -53));
}

InitRule init_rule(const Flavor& f, const std::string& name) {
  static const std::regex layer_re("^" + kLayer + "(.+)$");
  InitRule r;
  r.key = name;
  const double out_std = 1.0 / std::sqrt(static_cast<double>(f.dim));
  auto trunc = [&](double std, double a = -2.0, double b = 2.0) {
    r.kind = InitRule::Kind::TruncNormal;
    r.std = std;
    r.a = a;
    r.b = b;
    return r;
  };
  if (name == "tok_embeddings.weight") {
    // torchtitan ties output.weight to tok_embeddings.weight and then re-inits
    // it as the output layer, so a tied embedding gets the output init.
    if (f.tie_embeddings) {
      r.key = "output.weight";
      return trunc(out_std, -3 * out_std, 3 * out_std);
    }
    r.kind = InitRule::Kind::Normal;
    r.std = 1.0;
    return r;
  }
  if (name == "output.weight") return trunc(out_std, -3 * out_std, 3 * out_std);
  if (name == "norm.weight") {
    r.kind = InitRule::Kind::Ones;
    return r;
  }
  std::smatch m;
  if (std::regex_match(name, m, layer_re)) {
    const std::string rest = m[2];
    // torchtitan depth init: init_std = 0.02 / sqrt(2 * (layer_id + 1)).
    const double depth_std = 0.02 / std::sqrt(2.0 * (std::stod(m[1]) + 1.0));
    if (rest.ends_with("norm.weight")) {  // attention_norm, ffn_norm, q_norm, k_norm
      r.kind = InitRule::Kind::Ones;
      return r;
    }
    if (rest == "moe.expert_bias" || rest == "moe.tokens_per_expert") return r;  // zeros
    for (const char* w : {"attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "feed_forward.w1.weight",
                          "moe.experts.w1"})
      if (rest == w) return trunc(0.02);
    for (const char* w : {"attention.wo.weight", "feed_forward.w2.weight", "feed_forward.w3.weight", "moe.experts.w2",
                          "moe.experts.w3", "moe.router.gate.weight"})
      if (rest == w) return trunc(depth_std);
  }
  throw std::logic_error("init_rule: no initialisation rule for the model tensor '" + name + "'");
}

void init_shard(torch::Tensor& t, const InitRule& rule, uint64_t seed, const ShardView& view) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(t.sizes().vec() == view.local_shape(), "init_shard ", rule.key, ": tensor of shape ", t.sizes(),
              " for a view of local shape ", c10::IntArrayRef(view.local_shape()));
  if (rule.kind == InitRule::Kind::Zeros) {
    t.zero_();
    return;
  }
  const int64_t box = view.box_numel();
  const int64_t start = view.flat_size >= 0 ? view.flat_begin : 0;
  const int64_t count = view.flat_size >= 0 ? view.flat_size : box;
  // Padding (an FSDP shard past the tensor's end) stays zero.
  const int64_t valid = std::max<int64_t>(0, std::min(count, box - start));
  auto flat = t.view({-1});
  if (valid < count) flat.narrow(0, valid, count - valid).zero_();
  if (rule.kind == InitRule::Kind::Ones) {
    flat.narrow(0, 0, valid).fill_(1.0);
    return;
  }
  const uint64_t key = tensor_seed(seed, rule.key);
  const int64_t step = chunk_elements(t.device());
  for (int64_t off = 0; off < valid; off += step) {
    const int64_t n = std::min(step, valid - off);
    flat.narrow(0, off, n).copy_(draw(rule, key, global_indices(view, start + off, n, t.device())));
  }
}

void materialize(torch::nn::Module& module, const Flavor& flavor, const ShardViews& views, uint64_t seed,
                 torch::Device device) {
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& name, torch::Tensor& t) {
    if (!t.is_meta()) return;
    auto it = views.find(name);
    const ShardView view = it != views.end() ? it->second : ShardView::whole(t.sizes());
    auto data = torch::empty(t.sizes(), torch::TensorOptions().dtype(torch::kFloat32).device(device));
    init_shard(data, init_rule(flavor, name), seed, view);
    // set_data without its type check, which refuses meta -> dense; the
    // tensor has never been used, so there is no gradient accumulator to
    // reset (what set_data does besides). Module slots, the registered
    // parameter and FSDP's shard all share this TensorImpl and see the data.
    t.unsafeGetTensorImpl()->shallow_copy_from(data.getIntrusivePtr());
  };
  for (auto& p : module.named_parameters()) fill(p.key(), p.value());
  for (auto& b : module.named_buffers()) fill(b.key(), b.value());
}

void init_whole(torch::nn::Module& module, const Flavor& flavor, uint64_t seed) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters())
    init_shard(p.value(), init_rule(flavor, p.key()), seed, ShardView::whole(p.value().sizes()));
  for (auto& b : module.named_buffers())
    init_shard(b.value(), init_rule(flavor, b.key()), seed, ShardView::whole(b.value().sizes()));
}

void Qwen3ModelImpl::init_weights(uint64_t seed) { init_whole(*this, opts_.flavor, seed); }

}  // namespace partune::trainer
