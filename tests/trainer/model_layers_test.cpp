// Layer-by-layer gradient checks against finite differences (fp64), the
// attention reference against a naive loop, parameter names and counts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "common/flops.h"
#include "tests/trainer/model_testing.h"
#include "trainer/model/model.h"

namespace partune::trainer {
namespace {

using testing::expect_gradients_match;
using testing::f64;
using testing::tiny_flavor;

std::vector<std::pair<std::string, torch::Tensor>> named(torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

// Randomises every parameter (fp64) so that no gradient is trivially zero.
void randomise(torch::nn::Module& m, double std = 0.3) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.copy_(torch::randn(p.sizes(), f64()) * std + (p.dim() == 1 ? 1.0 : 0.0));
}

TEST(ModelGradCheck, RMSNorm) {
  torch::manual_seed(1);
  RMSNorm norm(8, 1e-6, f64());
  randomise(*norm);
  auto x = torch::randn({2, 3, 8}, f64()).requires_grad_();
  auto r = torch::randn({2, 3, 8}, f64());
  auto tensors = named(*norm);
  tensors.emplace_back("x", x);
  expect_gradients_match([&] { return (norm(x) * r).sum(); }, tensors);
}

TEST(ModelGradCheck, RMSNormMatchesDefinition) {
  auto x = torch::randn({3, 5}, f64());
  auto w = torch::randn({5}, f64());
  auto expected = x / torch::sqrt(x.pow(2).mean(-1, true) + 1e-6) * w;
  EXPECT_TRUE(torch::allclose(rms_norm(x, w, 1e-6), expected, 1e-12, 1e-12));
}

// Where the fused at::rms_norm runs (LibTorch >= 2.4, CUDA) it matches the
// reference in value and gradient, for fp32 and bf16 inputs; elsewhere
// rms_norm is the reference itself.
TEST(ModelGradCheck, RMSNormFastPathMatchesReference) {
  const bool cuda = fused_rms_norm_available() && torch::cuda::is_available();
  const auto device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  for (auto dt : {torch::kFloat32, torch::kBFloat16}) {
    if (!cuda && dt == torch::kBFloat16) continue;  // the CPU computes in fp32
    torch::manual_seed(4);
    auto x0 = torch::randn({2, 5, 64}).to(device, dt);
    auto w0 = (1 + 0.1 * torch::randn({64})).to(device);
    auto g = torch::randn({2, 5, 64}).to(device, dt);
    auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
    auto xr = x0.clone().requires_grad_(true), wr = w0.clone().requires_grad_(true);
    auto y = rms_norm(x, w, 1e-6), yr = rms_norm_reference(xr, wr, 1e-6);
    ASSERT_EQ(y.scalar_type(), dt);
    (y.to(torch::kFloat32) * g.to(torch::kFloat32)).sum().backward();
    (yr.to(torch::kFloat32) * g.to(torch::kFloat32)).sum().backward();
    const double tol = dt == torch::kBFloat16 ? 1e-2 : 1e-5;
    EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32), yr.to(torch::kFloat32), tol, tol)) << dt;
    EXPECT_TRUE(torch::allclose(x.grad().to(torch::kFloat32), xr.grad().to(torch::kFloat32), tol, tol)) << dt;
    EXPECT_TRUE(torch::allclose(w.grad(), wr.grad(), tol, tol)) << dt;
    if (!cuda) {
      EXPECT_TRUE(torch::equal(y, yr));
    }
  }
}

// The compiled mode's RMSNorm: on CUDA with at::rms_norm, bf16 in and out
// with a bf16-rounded weight, equal to the reference to bf16 tolerance in
// value and gradients; elsewhere it is rms_norm itself.
TEST(ModelGradCheck, RMSNormCompiledMatchesReference) {
  const bool cuda = fused_rms_norm_available() && torch::cuda::is_available();
  const auto device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const auto dt = cuda ? torch::kBFloat16 : torch::kFloat32;
  torch::manual_seed(5);
  auto x0 = torch::randn({2, 5, 64}).to(device, dt);
  auto w0 = (1 + 0.1 * torch::randn({64})).to(device);
  auto g = torch::randn({2, 5, 64}).to(device, dt);
  auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  auto xr = x0.clone().requires_grad_(true), wr = w0.clone().requires_grad_(true);
  auto y = rms_norm_compiled(x, w, 1e-6), yr = rms_norm_reference(xr, wr, 1e-6);
  ASSERT_EQ(y.scalar_type(), dt);
  (y.to(torch::kFloat32) * g.to(torch::kFloat32)).sum().backward();
  (yr.to(torch::kFloat32) * g.to(torch::kFloat32)).sum().backward();
  ASSERT_EQ(w.grad().scalar_type(), torch::kFloat32);
  const double tol = cuda ? 2e-2 : 1e-6;
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32), yr.to(torch::kFloat32), tol, tol));
  EXPECT_TRUE(torch::allclose(x.grad().to(torch::kFloat32), xr.grad().to(torch::kFloat32), tol, tol));
  EXPECT_TRUE(torch::allclose(w.grad(), wr.grad(), tol, tol));
}

AttentionOptions tiny_attention() {
  AttentionOptions o;
  o.dim = 32;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.head_dim = 8;
  o.compute_dtype = torch::kFloat64;
  o.param_options = f64();
  return o;
}

TEST(ModelGradCheck, AttentionWithRopeGqaQkNorm) {
  torch::manual_seed(2);
  Attention attn(tiny_attention());
  randomise(*attn);
  auto rope = precompute_rope_cache(8, 5, 1e4).to(torch::kFloat64);
  auto x = torch::randn({2, 5, 32}, f64()).requires_grad_();
  auto r = torch::randn({2, 5, 32}, f64());
  auto tensors = named(*attn);
  ASSERT_EQ(tensors.size(), 6u);  // wq wk wv wo q_norm k_norm
  tensors.emplace_back("x", x);
  expect_gradients_match([&] { return (attn(x, rope) * r).sum(); }, tensors);
}

TEST(ModelGradCheck, FeedForward) {
  torch::manual_seed(3);
  FeedForward ffn(32, 48, torch::kFloat64, f64());
  randomise(*ffn);
  auto x = torch::randn({2, 5, 32}, f64()).requires_grad_();
  auto r = torch::randn({2, 5, 32}, f64());
  auto tensors = named(*ffn);
  tensors.emplace_back("x", x);
  expect_gradients_match([&] { return (ffn(x) * r).sum(); }, tensors);
}

TEST(ModelGradCheck, FeedForwardIsSwiGLU) {
  torch::manual_seed(4);
  FeedForward ffn(6, 10, torch::kFloat64, f64());
  randomise(*ffn);
  auto x = torch::randn({3, 6}, f64());
  auto a = torch::matmul(x, ffn->w1->weight.t());
  auto expected = torch::matmul(a * torch::sigmoid(a) * torch::matmul(x, ffn->w3->weight.t()), ffn->w2->weight.t());
  EXPECT_TRUE(torch::allclose(ffn(x), expected, 1e-12, 1e-12));
}

TEST(ModelGradCheck, MoE) {
  torch::manual_seed(5);
  MoEOptions o;
  o.dim = 32;
  o.hidden_dim = 16;
  o.num_experts = 8;
  o.num_local_experts = 8;
  o.top_k = 2;
  o.compute_dtype = torch::kFloat64;
  o.param_options = f64();
  MoE moe(o);
  randomise(*moe);
  {
    torch::NoGradGuard g;
    moe->expert_bias.copy_(torch::randn({8}) * 0.05);
  }
  auto x = torch::randn({2, 5, 32}, f64()).requires_grad_();
  auto r = torch::randn({2, 5, 32}, f64());
  auto tensors = named(*moe);
  ASSERT_EQ(tensors.size(), 4u);  // router.gate.weight, experts.w1/w2/w3
  tensors.emplace_back("x", x);
  expect_gradients_match([&] { return (moe(x) * r).sum(); }, tensors, 1e-6, 24);
}

ModelOptions tiny_model_options(bool moe) {
  ModelOptions o;
  o.flavor = tiny_flavor(moe);
  o.compute_dtype = torch::kFloat64;
  return o;
}

void check_full_model(bool moe, bool tied) {
  torch::manual_seed(6);
  auto opts = tiny_model_options(moe);
  opts.flavor.tie_embeddings = tied;
  Qwen3Model model(opts);
  model->init_weights(7);
  model->to(torch::kFloat64);
  auto tokens = torch::randint(0, 64, {2, 6}, torch::kInt64);
  auto labels = torch::randint(0, 64, {2, 6}, torch::kInt64);
  auto tensors = named(*model);
  expect_gradients_match([&] { return trainer::cross_entropy_loss(model(tokens), labels); }, tensors, 1e-6, 6);
}

TEST(ModelGradCheck, FullDenseModel) { check_full_model(false, false); }
TEST(ModelGradCheck, FullDenseModelTiedEmbeddings) { check_full_model(false, true); }
TEST(ModelGradCheck, FullMoEModel) { check_full_model(true, false); }

// The attention reference against a loop over batch, head and query position.
TEST(ModelAttention, ReferenceMatchesNaiveLoop) {
  torch::manual_seed(8);
  const int64_t b = 2, hq = 6, hkv = 2, s = 5, d = 4;
  auto q = torch::randn({b, hq, s, d}, f64());
  auto k = torch::randn({b, hkv, s, d}, f64());
  auto v = torch::randn({b, hkv, s, d}, f64());
  auto got = causal_attention_reference(q, k, v);
  auto expected = torch::zeros_like(got);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t kh = h / (hq / hkv);
      for (int64_t i = 0; i < s; ++i) {
        std::vector<double> w(static_cast<size_t>(i + 1));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          w[j] = (q[bi][h][i] * k[bi][kh][j]).sum().item<double>() / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, w[j]);
        }
        for (auto& x : w) sum += (x = std::exp(x - mx));
        for (int64_t j = 0; j <= i; ++j) expected[bi][h][i] += v[bi][kh][j] * (w[j] / sum);
      }
    }
  EXPECT_TRUE(torch::allclose(got, expected, 1e-10, 1e-12));
}

TEST(ModelAttention, SdpaMatchesReferenceWhereBuilt) {
  if (!sdpa_available()) GTEST_SKIP() << "this LibTorch has no SDPA with GQA (< 2.5)";
  torch::manual_seed(9);
  auto q = torch::randn({2, 4, 7, 8});
  auto k = torch::randn({2, 2, 7, 8});
  auto v = torch::randn({2, 2, 7, 8});
  EXPECT_TRUE(torch::allclose(causal_attention_sdpa(q, k, v), causal_attention_reference(q, k, v), 1e-5, 1e-5));
}

TEST(ModelAttention, RopeRotatesPairsByPosition) {
  // Position 0 is the identity; the rotation preserves each (i, i + d/2) pair's norm.
  auto rope = precompute_rope_cache(8, 4, 1e6);
  ASSERT_EQ(rope.sizes(), (std::vector<int64_t>{4, 16}));
  auto x = torch::randn({1, 4, 2, 8});
  auto y = apply_rotary_emb(x, rope);
  EXPECT_TRUE(torch::allclose(y.select(1, 0), x.select(1, 0)));
  auto pair_norm = [](const torch::Tensor& t) { return t.slice(-1, 0, 4).pow(2) + t.slice(-1, 4, 8).pow(2); };
  EXPECT_TRUE(torch::allclose(pair_norm(y), pair_norm(x), 1e-5, 1e-5));
  // Frequency 0 rotates by exactly the position (theta^0 = 1).
  auto x0 = torch::zeros({1, 4, 1, 8});
  x0.select(3, 0).fill_(1.0);
  auto y0 = apply_rotary_emb(x0, rope);
  for (int64_t p = 0; p < 4; ++p) {
    EXPECT_NEAR(y0[0][p][0][0].item<double>(), std::cos(static_cast<double>(p)), 1e-6);
    EXPECT_NEAR(y0[0][p][0][4].item<double>(), std::sin(static_cast<double>(p)), 1e-6);
  }
}

// ---- parameter names and counts ----

int64_t numel_of(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

void expect_count_matches(const std::string& name, torch::Device device) {
  SCOPED_TRACE(name);
  ModelOptions o;
  o.flavor = *find_flavor("qwen3", name);
  o.device = device;
  Qwen3Model model(o);
  EXPECT_EQ(numel_of(*model), count_params(o.flavor).total());
}

TEST(ModelParams, CountsEqualCountParams) {
  expect_count_matches("debugmodel", torch::kCPU);
  expect_count_matches("debugmodel_moe", torch::kCPU);
  Flavor tiny = tiny_flavor(true);
  ModelOptions o;
  o.flavor = tiny;
  EXPECT_EQ(numel_of(*Qwen3Model(o)), count_params(tiny).total());
}

TEST(ModelParams, CountsOfPublishedFlavorsOnMetaDevice) {
  expect_count_matches("30B-A3B-L2", torch::kMeta);
  expect_count_matches("0.6B-L3", torch::kMeta);
  ModelOptions o;
  o.flavor = *find_flavor("qwen3", "30B-A3B");
  o.device = torch::kMeta;
  EXPECT_EQ(numel_of(*Qwen3Model(o)), 30532122624);
}

TEST(ModelParams, NamesMirrorTorchtitan) {
  ModelOptions o;
  o.flavor = tiny_flavor(true);
  Qwen3Model model(o);
  auto params = model->named_parameters();
  for (const char* n :
       {"tok_embeddings.weight", "layers.0.attention_norm.weight", "layers.0.ffn_norm.weight",
        "layers.1.attention.wq.weight", "layers.1.attention.wk.weight", "layers.1.attention.wv.weight",
        "layers.1.attention.wo.weight", "layers.1.attention.q_norm.weight", "layers.1.attention.k_norm.weight",
        "layers.0.moe.router.gate.weight", "layers.0.moe.experts.w1", "layers.0.moe.experts.w2",
        "layers.0.moe.experts.w3", "norm.weight", "output.weight"})
    EXPECT_TRUE(params.contains(n)) << n;
  EXPECT_EQ(params["layers.0.moe.experts.w1"].sizes(), (std::vector<int64_t>{8, 16, 32}));
  EXPECT_EQ(params["layers.0.moe.experts.w2"].sizes(), (std::vector<int64_t>{8, 32, 16}));
  auto buffers = model->named_buffers();
  EXPECT_TRUE(buffers.contains("layers.1.moe.expert_bias"));
  EXPECT_TRUE(buffers.contains("layers.1.moe.tokens_per_expert"));

  ModelOptions dense;
  dense.flavor = tiny_flavor(false);
  dense.flavor.tie_embeddings = true;
  auto dense_params = Qwen3Model(dense)->named_parameters();
  EXPECT_TRUE(dense_params.contains("layers.0.feed_forward.w2.weight"));
  EXPECT_FALSE(dense_params.contains("output.weight"));  // tied: the embedding serves as output
}

TEST(ModelParams, SharedExpertsAreRejected) {
  ModelOptions o;
  o.flavor = tiny_flavor(true);
  o.flavor.num_shared_experts = 1;
  EXPECT_THROW(Qwen3Model{o}, std::invalid_argument);
}

TEST(ModelForward, ShapesDtypesAndLoss) {
  ModelOptions o;
  o.flavor = tiny_flavor(true);
  Qwen3Model model(o);
  model->init_weights(1);
  // Seeded: the global generator's state otherwise depends on which tests ran before.
  torch::manual_seed(0);
  auto tokens = torch::randint(0, 64, {3, 7}, torch::kInt64);
  auto logits = model(tokens);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 7, 64}));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  auto labels = torch::randint(0, 64, {3, 7}, torch::kInt64);
  auto loss = trainer::cross_entropy_loss(logits, labels);
  auto manual = -torch::log_softmax(logits.view({-1, 64}), -1).gather(1, labels.view({-1, 1})).mean();
  EXPECT_NEAR(loss.item<double>(), manual.item<double>(), 1e-5);
  // Near-uniform predictions at init: loss close to log(vocab).
  EXPECT_NEAR(loss.item<double>(), std::log(64.0), 0.5);
  // Ignored labels (-100) drop out of the mean.
  labels.select(1, 0).fill_(-100);
  auto kept = -torch::log_softmax(logits.slice(1, 1).reshape({-1, 64}), -1)
                   .gather(1, labels.slice(1, 1).reshape({-1, 1}))
                   .mean();
  EXPECT_NEAR(trainer::cross_entropy_loss(logits, labels).item<double>(), kept.item<double>(), 1e-5);
}

TEST(ModelForward, CausalPrefixesAreIndependentOfLaterTokens) {
  ModelOptions o;
  o.flavor = tiny_flavor(false);
  Qwen3Model model(o);
  model->init_weights(2);
  auto tokens = torch::randint(0, 64, {1, 8}, torch::kInt64);
  auto changed = tokens.clone();
  changed[0][6] = (tokens[0][6].item<int64_t>() + 1) % 64;
  torch::NoGradGuard g;
  auto a = model(tokens), b = model(changed);
  EXPECT_TRUE(torch::allclose(a.slice(1, 0, 6), b.slice(1, 0, 6), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(a.slice(1, 6), b.slice(1, 6), 1e-6, 1e-6));
}

TEST(ModelForward, Bf16ComputeKeepsFp32MasterGradients) {
  ModelOptions o;
  o.flavor = tiny_flavor(true);
  o.compute_dtype = torch::kBFloat16;
  Qwen3Model model(o);
  model->init_weights(3);
  auto tokens = torch::randint(0, 64, {2, 5}, torch::kInt64);
  auto logits = model(tokens);
  EXPECT_EQ(logits.scalar_type(), torch::kFloat32);
  trainer::cross_entropy_loss(logits, tokens).backward();
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kFloat32) << p.key();
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat32) << p.key();
  }
  // bf16 logits agree with the fp32 model's to bf16 tolerance.
  ModelOptions o32 = o;
  o32.compute_dtype = torch::kFloat32;
  Qwen3Model ref(o32);
  ref->init_weights(3);
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::allclose(model(tokens), ref(tokens), 0.05, 0.05));
}

}  // namespace
}  // namespace partune::trainer
