// Activation checkpointing: which blocks each mode wraps (torchtitan's
// selective_ac_option rule), equal losses and gradients across modes for
// dense and MoE models, and no double counting of expert loads on recompute.
#include "trainer/checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/trainer/model_testing.h"
#include "trainer/model/model.h"
#include "trainer/parallelize/model_passes.h"

namespace partune::trainer {
namespace {

std::vector<bool> wrapped(ACConfig ac, int64_t layers) {
  std::vector<bool> out;
  for (int64_t i = 0; i < layers; ++i) out.push_back(should_checkpoint(ac, i));
  return out;
}

TEST(Checkpoint, WhichBlocksEachModeWraps) {
  EXPECT_EQ(wrapped({ACMode::None, 1}, 4), (std::vector<bool>{false, false, false, false}));
  EXPECT_EQ(wrapped({ACMode::Full, 1}, 4), (std::vector<bool>{true, true, true, true}));
  EXPECT_EQ(wrapped({ACMode::Selective, 1}, 4), (std::vector<bool>{true, true, true, true}));
  // "2": every second block, counting from 1 (torchtitan's _layer_sac_count % 2 == 0).
  EXPECT_EQ(wrapped({ACMode::Selective, 2}, 5), (std::vector<bool>{false, true, false, true, false}));
  EXPECT_EQ(wrapped({ACMode::Selective, 3}, 6), (std::vector<bool>{false, false, true, false, false, true}));
  EXPECT_EQ(wrapped({ACMode::Selective, 0}, 3), (std::vector<bool>{true, true, true}));  // "0": all
  EXPECT_EQ(block_ac({ACMode::Selective, 2, /*per_op=*/true}, 0), BlockAC::PerOp);       // "op": every block
  EXPECT_EQ(block_ac({ACMode::Selective, 2}, 1), BlockAC::Full);
  EXPECT_EQ(block_ac({ACMode::Selective, 2}, 0), BlockAC::None);
  EXPECT_THROW(should_checkpoint({ACMode::Selective, -1}, 0), std::invalid_argument);
}

TEST(Checkpoint, FunctionGivesInputAndParameterGradients) {
  torch::manual_seed(21);
  auto w = torch::randn({4, 4}, torch::kFloat64).requires_grad_();
  auto x = torch::randn({3, 4}, torch::kFloat64).requires_grad_();
  int calls = 0;
  BlockFn fn = [&](const torch::Tensor& in) {
    ++calls;
    return torch::tanh(torch::matmul(in, w)) * in;
  };
  auto direct = fn(x);
  auto gx = torch::autograd::grad({direct.sum()}, {x, w});
  auto y = checkpoint(fn, x, {w});
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(y.grad_fn() == nullptr);
  EXPECT_TRUE(torch::allclose(y, direct));
  y.sum().backward();
  EXPECT_EQ(calls, 3);  // recomputed once in backward
  EXPECT_TRUE(torch::allclose(x.grad(), gx[0], 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(w.grad(), gx[1], 1e-12, 1e-12));
  // Without grad mode it is a plain call.
  torch::NoGradGuard g;
  auto z = checkpoint(fn, x, {w});
  EXPECT_EQ(calls, 4);
  EXPECT_TRUE(z.grad_fn() == nullptr);
}

// Per-op: the recompute takes the 1st, 3rd, ... matmul and every saved_op
// from the forward's cache (the op itself does not run again), recomputes
// the rest, and the gradients are those of the plain function.
TEST(Checkpoint, PerOpRecomputesOnlyTheUnsavedOps) {
  torch::manual_seed(23);
  auto w1 = torch::randn({5, 4}, torch::kFloat64).requires_grad_();
  auto w2 = torch::randn({5, 5}, torch::kFloat64).requires_grad_();
  auto w3 = torch::randn({3, 5}, torch::kFloat64).requires_grad_();
  auto x = torch::randn({2, 3, 4}, torch::kFloat64).requires_grad_();
  int op_calls = 0, matmul_calls = 0;
  auto counted_matmul = [&](const torch::Tensor& in, const torch::Tensor& w) {
    ++matmul_calls;  // counts the calls of saved_matmul, which may or may not run the product
    return saved_matmul(in, w);
  };
  BlockFn fn = [&](const torch::Tensor& in) {
    auto a = torch::tanh(counted_matmul(in, w1));  // 1st: saved
    auto b = counted_matmul(a, w2);                // 2nd: recomputed
    auto c = saved_op(
        [&](const std::vector<torch::Tensor>& t) {
          ++op_calls;
          return torch::sigmoid(t[0]) * t[0];
        },
        {b});
    return counted_matmul(c, w3) * in.sum(-1, true);  // 3rd: saved
  };
  auto direct = fn(x);
  EXPECT_EQ(op_calls, 1);
  auto want = torch::autograd::grad({direct.pow(2).sum()}, {x, w1, w2, w3});
  auto y = checkpoint(fn, x, {w1, w2, w3}, /*per_op=*/true);
  EXPECT_EQ(op_calls, 2);
  EXPECT_TRUE(torch::allclose(y, direct, 1e-12, 1e-12));
  y.pow(2).sum().backward();
  EXPECT_EQ(op_calls, 2);      // the saved op is not run again in the recompute
  EXPECT_EQ(matmul_calls, 9);  // 3 direct, 3 forward, 3 recompute (of which only the 2nd multiplies)
  EXPECT_TRUE(torch::allclose(x.grad(), want[0], 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(w1.grad(), want[1], 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(w2.grad(), want[2], 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(w3.grad(), want[3], 1e-12, 1e-12));
}

TEST(Checkpoint, RecomputeFlagIsSetOnlyDuringRecompute) {
  auto x = torch::randn({2}, torch::kFloat64).requires_grad_();
  std::vector<bool> flags;
  auto y = checkpoint(
      [&](const torch::Tensor& in) {
        flags.push_back(is_recomputing());
        return in * 2;
      },
      x, {});
  y.sum().backward();
  EXPECT_EQ(flags, (std::vector<bool>{false, true}));
  EXPECT_FALSE(is_recomputing());
}

struct RunResult {
  double loss;
  std::map<std::string, torch::Tensor> grads;
  std::vector<torch::Tensor> tokens_per_expert;
};

RunResult run(bool moe, ACConfig ac, int steps = 1) {
  ModelOptions o;
  o.flavor = testing::tiny_flavor(moe);
  o.flavor.n_layers = 4;
  Qwen3Model model(o);
  model->init_weights(5);
  apply_activation_checkpointing(model, ac);
  torch::manual_seed(22);
  auto tokens = torch::randint(0, 64, {2, 9}, torch::kInt64);
  auto labels = torch::randint(0, 64, {2, 9}, torch::kInt64);
  RunResult r{};
  for (int s = 0; s < steps; ++s) {
    auto loss = trainer::cross_entropy_loss(model(tokens), labels);
    loss.backward();
    r.loss = loss.item<double>();
  }
  for (const auto& p : model->named_parameters()) r.grads[p.key()] = p.value().grad().clone();
  for (auto& b : model->layers())
    if (b->is_moe()) r.tokens_per_expert.push_back(b->moe->tokens_per_expert.clone());
  return r;
}

void expect_same(const RunResult& a, const RunResult& b) {
  EXPECT_NEAR(a.loss, b.loss, 1e-6);
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (const auto& [name, g] : a.grads) {
    ASSERT_TRUE(g.defined()) << name;
    ASSERT_TRUE(b.grads.at(name).defined()) << name;
    EXPECT_TRUE(torch::allclose(g, b.grads.at(name), 1e-5, 1e-7)) << name;
  }
  ASSERT_EQ(a.tokens_per_expert.size(), b.tokens_per_expert.size());
  for (size_t i = 0; i < a.tokens_per_expert.size(); ++i)
    EXPECT_TRUE(torch::equal(a.tokens_per_expert[i], b.tokens_per_expert[i])) << "layer " << i;
}

class CheckpointModes : public ::testing::TestWithParam<bool> {};

TEST_P(CheckpointModes, EqualGradientsAcrossModes) {
  const bool moe = GetParam();
  auto none = run(moe, {ACMode::None, 1});
  for (ACConfig ac : {ACConfig{ACMode::Full, 1}, ACConfig{ACMode::Selective, 2}, ACConfig{ACMode::Selective, 3},
                      ACConfig{ACMode::Selective, 0}, ACConfig{ACMode::Selective, 1, /*per_op=*/true}}) {
    SCOPED_TRACE(::testing::Message() << "mode " << static_cast<int>(ac.mode) << " every_n " << ac.every_n << " per_op "
                                      << ac.per_op);
    expect_same(none, run(moe, ac));
  }
}

TEST_P(CheckpointModes, GradientsAccumulateOverMicrobatches) {
  const bool moe = GetParam();
  auto none = run(moe, {ACMode::None, 1}, 2);
  expect_same(none, run(moe, {ACMode::Full, 1}, 2));
  expect_same(none, run(moe, {ACMode::Selective, 1, /*per_op=*/true}, 2));
}

INSTANTIATE_TEST_SUITE_P(DenseAndMoE, CheckpointModes, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "MoE" : "Dense"; });

TEST(Checkpoint, RecomputeDoesNotDoubleCountExpertLoad) {
  for (ACConfig ac : {ACConfig{ACMode::Full, 1}, ACConfig{ACMode::Selective, 1, /*per_op=*/true}}) {
    auto r = run(true, ac);
    ASSERT_EQ(r.tokens_per_expert.size(), 4u);
    for (const auto& t : r.tokens_per_expert) EXPECT_EQ(t.sum().item<double>(), 2 * 9 * 2);  // tokens x top_k
  }
}

}  // namespace
}  // namespace partune::trainer
