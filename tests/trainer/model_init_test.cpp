// Layout-independent initialisation (trainer/model/init.h): the counter
// generator against a scalar splitmix64, views against the whole draw,
// torchtitan's statistics, and a model built without storage against one
// drawn whole.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>

#include "tests/trainer/model_testing.h"
#include "trainer/model/init.h"
#include "trainer/model/model.h"

namespace partune::trainer {
namespace {

using testing::tiny_flavor;

// splitmix64 in plain uint64 arithmetic: element i of the stream keyed k.
double scalar_uniform(uint64_t k, uint64_t i) {
  uint64_t z = k + (i + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (static_cast<double>(z >> 11) + 0.5) * std::ldexp(1.0, -53);
}

TEST(InitGenerator, TensorOpsMatchScalarSplitmix) {
  const uint64_t key = tensor_seed(7, "layers.3.moe.experts.w1");
  const std::vector<int64_t> idx{
      0, 1, 2, 12345, (int64_t{1} << 31) + 5, (int64_t{1} << 40) - 1, (int64_t{1} << 52) + 3};
  auto u = counter_uniform(key, torch::tensor(idx, torch::kInt64));
  ASSERT_EQ(u.scalar_type(), torch::kFloat64);
  for (size_t i = 0; i < idx.size(); ++i)
    EXPECT_EQ(u[static_cast<int64_t>(i)].item<double>(), scalar_uniform(key, static_cast<uint64_t>(idx[i]))) << idx[i];
  // Uniform enough: mean and variance of many draws.
  auto many = counter_uniform(key, torch::arange(1 << 16, torch::kInt64));
  EXPECT_GT(many.min().item<double>(), 0.0);
  EXPECT_LT(many.max().item<double>(), 1.0);
  EXPECT_NEAR(many.mean().item<double>(), 0.5, 0.005);
  EXPECT_NEAR(many.var().item<double>(), 1.0 / 12, 0.002);
}

// Every view draws exactly its elements of the whole tensor.
TEST(InitGenerator, ViewsDrawTheirPartOfTheWhole) {
  InitRule rule;
  rule.kind = InitRule::Kind::TruncNormal;
  rule.std = 0.02;
  rule.key = "w";
  const std::vector<int64_t> shape{4, 6, 10};
  auto whole = torch::empty(shape);
  init_shard(whole, rule, 3, ShardView::whole(shape));

  // EP (dim 0), then ETP (dim 2).
  const ShardView box = ShardView::whole(shape).chunk(0, 2, 1).chunk(2, 5, 3);
  auto part = torch::empty(box.local_shape());
  init_shard(part, rule, 3, box);
  EXPECT_TRUE(torch::equal(part, whole.narrow(0, 2, 2).narrow(2, 6, 2)));

  // FSDP over the box, 3 ranks of 10 elements (24 in the box): the last
  // rank's shard ends in 6 zeros of padding.
  auto flat_box = whole.narrow(0, 2, 2).narrow(2, 6, 2).reshape({-1});
  for (int64_t r = 0; r < 3; ++r) {
    auto shard = torch::full({10}, 7.0f);
    init_shard(shard, rule, 3, box.flat(10 * r, 10));
    const int64_t valid = std::min<int64_t>(10, 24 - 10 * r);
    EXPECT_TRUE(torch::equal(shard.narrow(0, 0, valid), flat_box.narrow(0, 10 * r, valid))) << r;
    if (valid < 10) {
      EXPECT_EQ(shard.narrow(0, valid, 10 - valid).abs().sum().item<double>(), 0.0);
    }
  }
  // Ones and zeros respect the padding too.
  InitRule ones;
  ones.kind = InitRule::Kind::Ones;
  auto o = torch::empty({4});
  init_shard(o, ones, 3, ShardView::whole({6}).flat(4, 4));
  EXPECT_TRUE(torch::equal(o, torch::tensor({1.0f, 1.0f, 0.0f, 0.0f})));
  // A shape that does not match the view is an error, not a silent miss.
  auto wrong = torch::empty({3, 3});
  EXPECT_THROW(init_shard(wrong, rule, 3, box), c10::Error);
}

TEST(ModelInit, DeterministicAndTorchtitanShaped) {
  ModelOptions o;
  o.flavor = tiny_flavor(true);  // widened so that sample std estimates are tight
  o.flavor.dim = 128;
  o.flavor.head_dim = 32;
  o.flavor.vocab_size = 512;
  o.flavor.moe_inter_dim = 64;
  Qwen3Model a(o), b(o), c(o);
  a->init_weights(42);
  b->init_weights(42);
  c->init_weights(43);
  auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
  for (const auto& p : pa) {
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
    if (!p.key().ends_with("norm.weight")) {
      EXPECT_FALSE(torch::equal(p.value(), pc[p.key()])) << p.key();
    }
  }
  auto std_of = [&](const char* n) { return pa[n].std().item<double>(); };
  EXPECT_NEAR(std_of("tok_embeddings.weight"), 1.0, 0.02);
  EXPECT_NEAR(pa["tok_embeddings.weight"].mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(std_of("layers.0.attention.wq.weight"), 0.02, 0.001);
  EXPECT_NEAR(std_of("layers.1.attention.wo.weight"), 0.02 / std::sqrt(4.0), 0.001);  // depth init, layer 1
  EXPECT_NEAR(std_of("layers.1.moe.experts.w2"), 0.01, 0.0005);
  EXPECT_NEAR(std_of("layers.1.moe.router.gate.weight"), 0.01, 0.001);
  const double out_std = 1.0 / std::sqrt(128.0);
  EXPECT_NEAR(std_of("output.weight"), out_std * 0.986, out_std * 0.03);  // N(0, s) cut at 3 s
  EXPECT_LE(pa["output.weight"].abs().max().item<double>(), 3 * out_std + 1e-7);
  EXPECT_TRUE(torch::equal(pa["norm.weight"], torch::ones({128})));
  // Tensors of the same shape draw different streams (the key is the name).
  EXPECT_FALSE(torch::equal(pa["layers.0.attention.wk.weight"], pa["layers.0.attention.wv.weight"]));
}

TEST(ModelInit, TiedEmbeddingDrawsAsTheOutputLayer) {
  ModelOptions o;
  o.flavor = tiny_flavor(false);
  o.flavor.tie_embeddings = true;
  Qwen3Model m(o);
  m->init_weights(4);
  const double out_std = 1.0 / std::sqrt(static_cast<double>(o.flavor.dim));
  EXPECT_LE(m->tok_embeddings_weight().abs().max().item<double>(), 3 * out_std + 1e-7);
}

// World 1 of the trainer: built without storage, then drawn, equals the
// model drawn whole; the tensors land on the device asked for, in fp32.
TEST(ModelInit, MaterializeEqualsWholeInit) {
  for (bool moe : {false, true}) {
    ModelOptions o;
    o.flavor = tiny_flavor(moe);
    Qwen3Model whole(o);
    whole->init_weights(11);
    o.without_storage = true;
    Qwen3Model born(o);
    for (const auto& p : born->parameters()) ASSERT_TRUE(p.is_meta());
    materialize(*born, o.flavor, {}, 11, torch::kCPU);
    auto want = whole->named_parameters();
    for (const auto& p : born->named_parameters()) {
      EXPECT_TRUE(p.value().device().is_cpu()) << p.key();
      EXPECT_EQ(p.value().scalar_type(), torch::kFloat32) << p.key();
      EXPECT_TRUE(p.value().requires_grad()) << p.key();
      EXPECT_TRUE(torch::equal(p.value(), want[p.key()])) << p.key();
    }
    for (const auto& b : born->named_buffers()) EXPECT_FALSE(b.value().is_meta()) << b.key();
    // It trains: a backward reaches every parameter.
    auto tokens = torch::randint(0, o.flavor.vocab_size, {2, 5}, torch::kInt64);
    trainer::cross_entropy_loss(born(tokens), tokens).backward();
    for (const auto& p : born->named_parameters()) EXPECT_TRUE(p.value().grad().defined()) << p.key();
  }
}

TEST(ModelInit, UnknownTensorNameIsAnError) {
  EXPECT_THROW(init_rule(tiny_flavor(true), "layers.0.moe.experts.w4"), std::logic_error);
  EXPECT_THROW(init_rule(tiny_flavor(true), "lm_head.weight"), std::logic_error);
}

}  // namespace
}  // namespace partune::trainer
