// The compiled memory mode's functions against the eager compositions they
// replace (values and gradients): the fused output + loss over several
// chunk sizes (a ragged last chunk, one token per chunk, one chunk for all),
// ignored labels, fp64 and fp32; SwiGLU and the gate-weighted expert sum;
// whole models with apply_compile against the eager model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/trainer/model_testing.h"
#include "trainer/metrics/device_memory.h"
#include "trainer/model/chunked_loss.h"
#include "trainer/model/fused_elementwise.h"
#include "trainer/model/model.h"
#include "trainer/parallelize/model_passes.h"

namespace partune::trainer {
namespace {

using testing::tiny_flavor;

struct LossAndGrads {
  double loss;
  torch::Tensor grad_hidden, grad_weight;
};

LossAndGrads reference_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                            double upstream) {
  auto h = hidden.detach().clone().requires_grad_();
  auto w = weight.detach().clone().requires_grad_();
  auto loss = trainer::cross_entropy_loss(torch::linear(h, w.to(h.scalar_type())).unsqueeze(0), labels.unsqueeze(0));
  (loss * upstream).backward();
  return {loss.item<double>(), h.grad(), w.grad()};
}

LossAndGrads chunked_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                          double upstream, int64_t chunk) {
  auto h = hidden.detach().clone().requires_grad_();
  auto w = weight.detach().clone().requires_grad_();
  auto loss = chunked_linear_cross_entropy(h, w, labels, chunk);
  (loss * upstream).backward();
  return {loss.item<double>(), h.grad(), w.grad()};
}

class ChunkedLoss : public ::testing::TestWithParam<torch::Dtype> {};

TEST_P(ChunkedLoss, MatchesReferenceAtEveryChunkSize) {
  const auto dt = GetParam();
  const double tol = dt == torch::kFloat64 ? 1e-12 : 2e-6;
  torch::manual_seed(31);
  const int64_t n = 23, dim = 16, vocab = 50;
  auto hidden = torch::randn({n, dim}, dt);
  auto weight = torch::randn({vocab, dim}, dt) * 0.3;
  auto labels = torch::randint(0, vocab, {n}, torch::kInt64);
  labels.index_put_({torch::tensor({0, 5, 6, 22})}, -100);  // ignored, one of them the last row
  const double upstream = 0.37;                             // the trainer scales the loss by valid / valid_total
  const auto want = reference_loss(hidden, weight, labels, upstream);
  for (int64_t chunk : {0, 1, 4, 7, 22, 23, 64}) {  // 0: the default, one chunk; 23 = 3 x 7 + 2: a ragged last chunk
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    const auto got = chunked_loss(hidden, weight, labels, upstream, chunk);
    EXPECT_NEAR(got.loss, want.loss, tol * std::abs(want.loss));
    EXPECT_TRUE(torch::allclose(got.grad_hidden, want.grad_hidden, tol, tol));
    EXPECT_TRUE(torch::allclose(got.grad_weight, want.grad_weight, tol, tol));
    EXPECT_EQ(got.grad_hidden.scalar_type(), dt);
    EXPECT_EQ(got.grad_weight.scalar_type(), dt);
  }
  // Ignored rows get no gradient.
  const auto got = chunked_loss(hidden, weight, labels, upstream, 5);
  EXPECT_EQ(got.grad_hidden[5].abs().max().item<double>(), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Fp64AndFp32, ChunkedLoss, ::testing::Values(torch::kFloat64, torch::kFloat32),
                         [](const auto& info) { return info.param == torch::kFloat64 ? "Fp64" : "Fp32"; });

TEST(ChunkedLossFunction, GradientsMatchFiniteDifferences) {
  torch::manual_seed(32);
  auto hidden = torch::randn({2, 5, 6}, torch::kFloat64).requires_grad_();  // [B, S, dim] accepted
  auto weight = (torch::randn({11, 6}, torch::kFloat64) * 0.5).requires_grad_();
  auto labels = torch::randint(0, 11, {2, 5}, torch::kInt64);
  labels[1][2] = -100;
  testing::expect_gradients_match([&] { return chunked_linear_cross_entropy(hidden, weight, labels, 3); },
                                  {{"hidden", hidden}, {"weight", weight}}, 1e-7, 20);
}

TEST(ChunkedLossFunction, Fp32WeightWithLowerPrecisionHidden) {
  // The trainer's mixed precision: fp32 master weight, hidden in the compute
  // dtype; the weight's gradient comes back in fp32, hidden's in its dtype.
  torch::manual_seed(33);
  auto hidden = torch::randn({9, 8}, torch::kBFloat16).requires_grad_();
  auto weight = (torch::randn({20, 8}) * 0.3).requires_grad_();
  auto labels = torch::randint(0, 20, {9}, torch::kInt64);
  auto loss = chunked_linear_cross_entropy(hidden, weight, labels, 4);
  EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
  loss.backward();
  EXPECT_EQ(hidden.grad().scalar_type(), torch::kBFloat16);
  EXPECT_EQ(weight.grad().scalar_type(), torch::kFloat32);
  const auto want = reference_loss(hidden, weight, labels, 1.0);
  EXPECT_NEAR(loss.item<double>(), want.loss, 1e-3);
  EXPECT_TRUE(torch::allclose(weight.grad(), want.grad_weight.to(torch::kFloat32), 0.02, 2e-3));
}

TEST(ChunkedLossFunction, WithoutGradModeOnlyTheLoss) {
  torch::manual_seed(34);
  auto hidden = torch::randn({7, 4}).requires_grad_();
  auto weight = torch::randn({9, 4}).requires_grad_();
  auto labels = torch::randint(0, 9, {7}, torch::kInt64);
  const double want = reference_loss(hidden, weight, labels, 1.0).loss;
  torch::NoGradGuard no_grad;
  auto loss = chunked_linear_cross_entropy(hidden, weight, labels, 2);
  EXPECT_TRUE(loss.grad_fn() == nullptr);
  EXPECT_NEAR(loss.item<double>(), want, 1e-6);
}

// The default is compiled torchtitan's memory at the loss: the whole batch's
// logits and their softmax in bf16 exist at once (4 bytes per logit), no fp32
// copy of them; a smaller chunk holds that much per chunk only.
TEST(ChunkedLossFunction, DefaultHoldsTheWholeBatchsBf16LogitsAndSoftmaxOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "the caching allocator's peak is measured on CUDA only";
  const int64_t n = 4096, dim = 256, vocab = 32768;
  const double logits_bytes = double(n) * double(vocab) * 2;  // 256 MiB in bf16
  const auto opts = torch::TensorOptions().device(torch::kCUDA);
  torch::manual_seed(36);
  auto hidden = torch::randn({n, dim}, opts.dtype(torch::kBFloat16)).requires_grad_();
  auto weight = (torch::randn({vocab, dim}, opts) * 0.05).requires_grad_();
  auto labels = torch::randint(0, vocab, {n}, opts.dtype(torch::kInt64));
  auto peak_over_base = [&](int64_t chunk) {
    torch::cuda::synchronize();
    DeviceMemoryMonitor monitor(torch::Device(torch::kCUDA, 0));
    monitor.release_cached_memory();
    monitor.reset_peak_stats();
    const double base = monitor.peak_stats().max_reserved_bytes;
    chunked_linear_cross_entropy(hidden, weight, labels, chunk).backward();
    torch::cuda::synchronize();
    return monitor.peak_stats().max_reserved_bytes - base;
  };
  const double whole = peak_over_base(0);
  EXPECT_GE(whole, 2 * logits_bytes);
  EXPECT_LT(whole, 3 * logits_bytes);  // no fp32 [tokens, vocab] copy (that alone is 2 x logits_bytes)
  EXPECT_LT(peak_over_base(512), whole / 2);
}

// The compiled mode's parameter cast: the same values and gradients as
// cast(), bit for bit, whichever layout the gradient arrives in (the
// grouped GEMM reads expert weights transposed).
TEST(FusedElementwise, CastParameterEqualsCastValuesAndGradients) {
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) devices.push_back(torch::kCUDA);
  for (const auto& device : devices) {
    SCOPED_TRACE(device.str());
    torch::manual_seed(37);
    const auto w = torch::randn({4, 24, 40}, torch::TensorOptions().device(device));
    const auto g = torch::randn({4, 40, 24}, torch::TensorOptions().device(device).dtype(torch::kBFloat16));
    auto grad_of = [&](bool fast) {
      auto leaf = w.clone().requires_grad_();
      auto c = fast ? cast_parameter(leaf, torch::kBFloat16) : cast(leaf, torch::kBFloat16);
      EXPECT_EQ(c.scalar_type(), torch::kBFloat16);
      (c.transpose(-2, -1).to(torch::kFloat32) * g.to(torch::kFloat32)).sum().backward();
      return std::make_pair(c.detach(), leaf.grad());
    };
    const auto [want_value, want_grad] = grad_of(false);
    const auto [got_value, got_grad] = grad_of(true);
    EXPECT_TRUE(torch::equal(got_value, want_value));
    EXPECT_EQ(got_grad.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(got_grad, want_grad));
  }
}

TEST(FusedElementwise, SwiGLUMatchesReference) {
  torch::manual_seed(35);
  for (auto dt : {torch::kFloat64, torch::kFloat32}) {
    const double tol = dt == torch::kFloat64 ? 1e-12 : 1e-6;
    auto a = (torch::randn({6, 10}, dt) * 3).requires_grad_();
    auto b = torch::randn({6, 10}, dt).requires_grad_();
    auto g = torch::randn({6, 10}, dt);
    auto want = swiglu_reference(a, b);
    auto want_grads = torch::autograd::grad({want}, {a, b}, {g});
    auto got = swiglu(a, b);
    auto got_grads = torch::autograd::grad({got}, {a, b}, {g});
    EXPECT_TRUE(torch::allclose(got, want, tol, tol));
    EXPECT_TRUE(torch::allclose(got_grads[0], want_grads[0], tol, tol));
    EXPECT_TRUE(torch::allclose(got_grads[1], want_grads[1], tol, tol));
  }
}

TEST(FusedElementwise, RotaryMatchesReference) {
  // A cache longer than the sequence (the model's is built for seq_len), fp64
  // exactly, bf16 within its rounding; values and the gradient of x.
  const auto cache = precompute_rope_cache(8, 11, 10000.0);
  for (auto dt : {torch::kFloat64, torch::kBFloat16}) {
    torch::manual_seed(37);
    auto x = torch::randn({2, 7, 3, 8}, torch::kFloat64).to(dt).requires_grad_();
    auto g = torch::randn({2, 7, 3, 8}, torch::kFloat64).to(dt);
    auto want = apply_rotary_emb(x, cache);
    auto want_grad = torch::autograd::grad({want}, {x}, {g})[0];
    auto got = rotary_emb(x, cache);
    auto got_grad = torch::autograd::grad({got}, {x}, {g})[0];
    EXPECT_EQ(got.scalar_type(), dt);
    const double tol = dt == torch::kFloat64 ? 1e-12 : 2e-2;
    EXPECT_TRUE(torch::allclose(got.to(torch::kFloat64), want.to(torch::kFloat64), tol, tol));
    EXPECT_TRUE(torch::allclose(got_grad.to(torch::kFloat64), want_grad.to(torch::kFloat64), tol, tol));
  }
  // A non-contiguous incoming gradient (the attention's transpose gives one).
  auto x = torch::randn({2, 5, 4, 8}, torch::kFloat64).requires_grad_();
  auto g = torch::randn({2, 4, 5, 8}, torch::kFloat64).transpose(1, 2);
  auto want_grad = torch::autograd::grad({apply_rotary_emb(x, cache)}, {x}, {g})[0];
  auto got_grad = torch::autograd::grad({rotary_emb(x, cache)}, {x}, {g})[0];
  EXPECT_TRUE(torch::allclose(got_grad, want_grad, 1e-12, 1e-12));
}

TEST(FusedElementwise, WeightedExpertSumMatchesReference) {
  torch::manual_seed(36);
  auto gates = torch::rand({5, 3}, torch::kFloat64).requires_grad_();
  auto y = torch::randn({5, 3, 4}, torch::kFloat64).requires_grad_();
  auto g = torch::randn({5, 4}, torch::kFloat64);
  auto want = weighted_expert_sum_reference(gates, y);
  auto want_grads = torch::autograd::grad({want}, {gates, y}, {g});
  auto got = weighted_expert_sum(gates, y);
  auto got_grads = torch::autograd::grad({got}, {gates, y}, {g});
  EXPECT_TRUE(torch::allclose(got, want, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(got_grads[0], want_grads[0], 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(got_grads[1], want_grads[1], 1e-12, 1e-12));
  // Expert outputs in a lower precision than the gates: the result and the
  // gates' gradient in the gates' dtype, y's gradient in y's.
  auto yb = y.detach().to(torch::kBFloat16).requires_grad_();
  auto out = weighted_expert_sum(gates, yb);
  EXPECT_EQ(out.scalar_type(), torch::kFloat64);
  out.backward(g);
  EXPECT_EQ(yb.grad().scalar_type(), torch::kBFloat16);
}

// A whole model in the compiled memory mode against the eager model: the
// same loss and the same gradient for every parameter.
void expect_compiled_matches_eager(bool moe, bool tied, const ACConfig& ac) {
  ModelOptions o;
  o.flavor = tiny_flavor(moe);
  o.flavor.tie_embeddings = tied;
  o.compute_dtype = torch::kFloat64;
  torch::manual_seed(37);
  auto tokens = torch::randint(0, 64, {2, 9}, torch::kInt64);
  auto labels = torch::randint(0, 64, {2, 9}, torch::kInt64);
  labels[0][3] = -100;
  auto run = [&](bool compiled) {
    Qwen3Model model(o);
    model->init_weights(8);
    model->to(torch::kFloat64);
    apply_activation_checkpointing(model, compiled ? ac : ACConfig{});
    apply_compile(model, {compiled, compiled, /*loss_chunk_tokens=*/5});
    auto loss = model->forward_loss(tokens, labels);
    loss.backward();
    std::map<std::string, torch::Tensor> grads;
    for (const auto& p : model->named_parameters()) grads[p.key()] = p.value().grad();
    return std::pair{loss.item<double>(), grads};
  };
  const auto [want_loss, want] = run(false);
  const auto [got_loss, got] = run(true);
  EXPECT_NEAR(got_loss, want_loss, 1e-12);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, g] : want) {
    ASSERT_TRUE(g.defined()) << name;
    ASSERT_TRUE(got.at(name).defined()) << name;
    EXPECT_TRUE(torch::allclose(got.at(name), g, 1e-10, 1e-12)) << name;
  }
}

TEST(CompiledMode, DenseModelMatchesEager) { expect_compiled_matches_eager(false, false, {}); }
TEST(CompiledMode, TiedEmbeddingsMatchEager) { expect_compiled_matches_eager(false, true, {}); }
TEST(CompiledMode, MoEModelMatchesEager) { expect_compiled_matches_eager(true, false, {}); }
TEST(CompiledMode, WithPerOpActivationCheckpointing) {
  expect_compiled_matches_eager(false, false, {ACMode::Selective, 1, /*per_op=*/true});
  expect_compiled_matches_eager(true, false, {ACMode::Selective, 1, /*per_op=*/true});
}
TEST(CompiledMode, WithFullActivationCheckpointing) { expect_compiled_matches_eager(true, false, {ACMode::Full, 1}); }

TEST(CompiledMode, PassSetsEveryFusedPathAndBack) {
  ModelOptions o;
  o.flavor = tiny_flavor(true);
  Qwen3Model model(o);
  apply_compile(model, {true, true, 7});
  EXPECT_TRUE(model->chunked_loss);
  EXPECT_EQ(model->loss_chunk_tokens, 7);
  EXPECT_TRUE(model->norm->fused);
  for (auto& b : model->layers()) {
    EXPECT_TRUE(b->moe->fused);
    EXPECT_TRUE(b->moe->experts->fused);
    EXPECT_TRUE(b->attention_norm->fused && b->ffn_norm->fused && b->attention->q_norm->fused);
    EXPECT_TRUE(b->attention->fused);
  }
  apply_compile(model, {/*model=*/false, /*loss=*/true});  // compile.components = ["loss"]
  EXPECT_TRUE(model->chunked_loss);
  for (auto& b : model->layers()) EXPECT_FALSE(b->moe->fused || b->moe->experts->fused);
  apply_compile(model, {/*model=*/true, /*loss=*/false});  // ["model"]
  EXPECT_FALSE(model->chunked_loss);
  for (auto& b : model->layers()) EXPECT_TRUE(b->moe->fused && b->moe->experts->fused);
  apply_compile(model, {});
  EXPECT_FALSE(model->chunked_loss);
  for (auto& b : model->layers()) EXPECT_FALSE(b->moe->fused || b->moe->experts->fused || b->attention->fused);
}

}  // namespace
}  // namespace partune::trainer
