// MoE routing against a direct per-token reference: top-k over scores plus
// expert bias, gates from the unbiased scores renormalised over k, per-token
// expert sums, tokens_per_expert counts and the aux-loss-free bias update.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "tests/trainer/model_testing.h"
#include "trainer/model/model.h"

namespace partune::trainer {
namespace {

using testing::f64;

MoEOptions tiny_moe(int64_t top_k = 2) {
  MoEOptions o;
  o.dim = 12;
  o.hidden_dim = 10;
  o.num_experts = 6;
  o.num_local_experts = 6;
  o.top_k = top_k;
  o.compute_dtype = torch::kFloat64;
  o.param_options = f64();
  return o;
}

void randomise(MoE& moe) {
  torch::NoGradGuard g;
  for (auto& p : moe->parameters()) p.copy_(torch::randn(p.sizes(), f64()) * 0.5);
}

struct TokenRoute {
  std::vector<int64_t> experts;  // chosen, by decreasing biased score
  std::vector<double> gates;
};

// One token at a time, straight from the definition.
TokenRoute route_token(MoE& moe, const torch::Tensor& x_row) {
  const int64_t e = moe->options().num_experts, k = moe->options().top_k;
  auto logits = torch::mv(moe->router->gate->weight, x_row);
  std::vector<double> score(e), biased(e);
  double mx = -1e300, sum = 0;
  for (int64_t i = 0; i < e; ++i) mx = std::max(mx, logits[i].item<double>());
  for (int64_t i = 0; i < e; ++i) sum += (score[i] = std::exp(logits[i].item<double>() - mx));
  for (int64_t i = 0; i < e; ++i) {
    score[i] /= sum;
    biased[i] = score[i] + moe->expert_bias[i].item<double>();
  }
  std::vector<int64_t> ids(e);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return biased[a] > biased[b]; });
  TokenRoute r;
  double chosen = 0;
  for (int64_t j = 0; j < k; ++j) {
    r.experts.push_back(ids[j]);
    chosen += score[ids[j]];
  }
  for (int64_t j = 0; j < k; ++j) r.gates.push_back(score[ids[j]] / chosen);
  return r;
}

torch::Tensor expert_apply(MoE& moe, int64_t e, const torch::Tensor& x_row) {
  auto& ex = moe->experts;
  auto a = torch::mv(ex->w1[e], x_row);
  return torch::mv(ex->w2[e], torch::silu(a) * torch::mv(ex->w3[e], x_row));
}

torch::Tensor moe_reference(MoE& moe, const torch::Tensor& x, std::vector<int64_t>* counts) {
  auto xf = x.reshape({-1, x.size(-1)});
  auto out = torch::zeros_like(xf);
  for (int64_t n = 0; n < xf.size(0); ++n) {
    auto r = route_token(moe, xf[n]);
    for (size_t j = 0; j < r.experts.size(); ++j) {
      out[n] += r.gates[j] * expert_apply(moe, r.experts[j], xf[n]);
      if (counts) ++(*counts)[r.experts[j]];
    }
  }
  return out.view(x.sizes());
}

TEST(ModelMoE, RouterTopKAndRenormalisation) {
  torch::manual_seed(11);
  MoE moe(tiny_moe(3));
  randomise(moe);
  auto x = torch::randn({9, 12}, f64());
  auto out = moe->router(x, moe->expert_bias);
  ASSERT_EQ(out.selected_experts.sizes(), (std::vector<int64_t>{9, 3}));
  for (int64_t n = 0; n < 9; ++n) {
    auto r = route_token(moe, x[n]);
    std::vector<int64_t> got(3);
    for (int64_t j = 0; j < 3; ++j) got[j] = out.selected_experts[n][j].item<int64_t>();
    EXPECT_EQ(got, r.experts) << "token " << n;
    for (int64_t j = 0; j < 3; ++j) EXPECT_NEAR(out.top_scores[n][j].item<double>(), r.gates[j], 1e-12);
    EXPECT_NEAR(out.top_scores[n].sum().item<double>(), 1.0, 1e-12);
  }
  EXPECT_EQ(out.counts.sum().item<int64_t>(), 27);
}

TEST(ModelMoE, OutputMatchesPerTokenReference) {
  torch::manual_seed(12);
  MoE moe(tiny_moe());
  randomise(moe);
  auto x = torch::randn({3, 5, 12}, f64());
  std::vector<int64_t> counts(6, 0);
  auto expected = moe_reference(moe, x, &counts);
  auto got = moe(x);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-10, 1e-12));
  for (int64_t e = 0; e < 6; ++e) EXPECT_EQ(moe->tokens_per_expert[e].item<double>(), counts[e]) << "expert " << e;
  moe(x);  // counts accumulate until update_expert_biases
  EXPECT_EQ(moe->tokens_per_expert.sum().item<double>(), 2 * 15 * 2);
}

TEST(ModelMoE, ExpertBiasSteersSelectionButNotGates) {
  torch::manual_seed(13);
  MoE moe(tiny_moe());
  randomise(moe);
  auto x = torch::randn({8, 12}, f64());
  {
    torch::NoGradGuard g;
    moe->expert_bias[4] = 10.0;  // every token picks expert 4
  }
  auto out = moe->router(x, moe->expert_bias);
  auto scores = torch::softmax(torch::matmul(x, moe->router->gate->weight.t()), 1);
  for (int64_t n = 0; n < 8; ++n) {
    EXPECT_EQ(out.selected_experts[n][0].item<int64_t>(), 4);
    const int64_t other = out.selected_experts[n][1].item<int64_t>();
    // Second choice: the best unbiased score among the rest.
    auto rest = scores[n].clone();
    rest[4] = -1;
    EXPECT_EQ(other, rest.argmax().item<int64_t>());
    // Gate: expert 4's own score share, not its biased score.
    const double s4 = scores[n][4].item<double>(), so = scores[n][other].item<double>();
    EXPECT_NEAR(out.top_scores[n][0].item<double>(), s4 / (s4 + so), 1e-12);
  }
  EXPECT_EQ(out.counts[4].item<int64_t>(), 8);
  EXPECT_TRUE(torch::allclose(moe(x.view({2, 4, 12})), moe_reference(moe, x.view({2, 4, 12}), nullptr), 1e-10, 1e-12));
}

TEST(ModelMoE, UpdateExpertBiasesFollowsTorchtitanRule) {
  ModelOptions o;
  o.flavor = testing::tiny_flavor(true);
  Qwen3Model model(o);
  model->init_weights(3);
  auto& moe0 = model->layers()[0]->moe;
  auto& moe1 = model->layers()[1]->moe;
  {
    torch::NoGradGuard g;
    moe0->tokens_per_expert.copy_(torch::tensor({5., 1., 3., 3., 0., 8., 2., 2.}));  // mean 3
    moe1->tokens_per_expert.fill_(4.0);                                              // balanced
  }
  model->update_expert_biases();
  // delta = 1e-3 * sign(mean - count) = 1e-3 * [-1, 1, 0, 0, 1, -1, 1, 1]; minus its mean (2e-3 / 8).
  auto sign = torch::tensor({-1., 1., 0., 0., 1., -1., 1., 1.});
  auto expected = 1e-3 * sign - 1e-3 * sign.mean();
  EXPECT_TRUE(torch::allclose(moe0->expert_bias, expected, 1e-9, 1e-12));
  EXPECT_TRUE(torch::equal(moe1->expert_bias, torch::zeros({8})));
  EXPECT_EQ(moe0->tokens_per_expert.abs().sum().item<double>(), 0.0);
  EXPECT_EQ(moe1->tokens_per_expert.abs().sum().item<double>(), 0.0);

  // A second update accumulates; a reduce hook sees the stacked counts first.
  {
    torch::NoGradGuard g;
    moe0->tokens_per_expert.copy_(torch::tensor({5., 1., 3., 3., 0., 8., 2., 2.}));
  }
  torch::Tensor seen;
  model->update_expert_biases([&](const torch::Tensor& t) {
    seen = t.clone();
    return t * 2;  // as if two identical ranks
  });
  ASSERT_EQ(seen.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_TRUE(torch::allclose(moe0->expert_bias, 2 * expected, 1e-9, 1e-12));
}

TEST(ModelMoE, ExpertsReferenceMatchesPerRowLoop) {
  torch::manual_seed(15);
  auto w1 = torch::randn({3, 5, 4}, f64()), w2 = torch::randn({3, 4, 5}, f64()), w3 = torch::randn({3, 5, 4}, f64());
  auto x = torch::randn({7, 4}, f64());
  std::vector<int64_t> counts{3, 0, 4};
  auto got = experts_reference(x, w1, w2, w3, counts);
  for (int64_t r = 0; r < 7; ++r) {
    const int64_t e = r < 3 ? 0 : 2;
    auto a = torch::mv(w1[e], x[r]);
    auto expected = torch::mv(w2[e], torch::silu(a) * torch::mv(w3[e], x[r]));
    EXPECT_TRUE(torch::allclose(got[r], expected, 1e-12, 1e-12)) << "row " << r;
  }
  EXPECT_THROW(experts_reference(x, w1, w2, w3, {3, 0, 3}), c10::Error);
}

// An EP rank may receive no rows at all; its output must still be in the
// graph of the input and the weights, so that backward runs the same
// collectives (the reverse all-to-all, FSDP's reduce-scatter) on every rank.
TEST(ModelMoE, ExpertsReferenceWithNoRowsStaysInTheGraph) {
  auto w1 = torch::randn({2, 5, 4}, f64()).requires_grad_(), w2 = torch::randn({2, 4, 5}, f64()).requires_grad_(),
       w3 = torch::randn({2, 5, 4}, f64()).requires_grad_();
  auto x = torch::randn({0, 4}, f64()).requires_grad_();
  auto out = experts_reference(x, w1, w2, w3, {0, 0});
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{0, 4}));
  ASSERT_TRUE(out.requires_grad());
  out.sum().backward();
  for (const auto* t : {&x, &w1, &w2, &w3}) {
    ASSERT_TRUE(t->grad().defined());
    EXPECT_EQ(t->grad().abs().sum().item<double>(), 0.0);
  }
}

TEST(ModelMoE, GroupedMmMatchesReferenceWhereBuilt) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "grouped GEMM runs on CUDA only";
  auto probe = torch::zeros({1, 8}, torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA));
  if (!grouped_mm_usable(probe, torch::zeros({1, 8, 8}))) GTEST_SKIP() << "this LibTorch has no _grouped_mm (< 2.8)";
  torch::manual_seed(16);
  auto opts = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  auto w1 = torch::randn({4, 32, 64}, opts) * 0.1, w2 = torch::randn({4, 64, 32}, opts) * 0.1,
       w3 = torch::randn({4, 32, 64}, opts) * 0.1;
  std::vector<int64_t> counts{5, 0, 17, 3};  // uneven and empty groups
  auto x = torch::randn({25, 64}, opts);
  auto fast = experts_grouped_mm(x, w1, w2, w3, counts).to(torch::kFloat32);
  auto ref = experts_reference(x, w1, w2, w3, counts).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(fast, ref, 2e-2, 2e-2)) << (fast - ref).abs().max().item<double>();
}

// A dispatcher that keeps all experts local but records what it saw, to pin
// the contract with trainer/parallel: rows sorted by expert, counts per expert.
class RecordingDispatcher : public LocalDispatcher {
 public:
  explicit RecordingDispatcher(int64_t n) : LocalDispatcher(n) {}
  std::pair<torch::Tensor, std::vector<int64_t>> dispatch(const torch::Tensor& rows,
                                                          const std::vector<int64_t>& counts) override {
    seen_counts = counts;
    seen_rows = rows.detach().clone();
    return LocalDispatcher::dispatch(rows, counts);
  }
  std::vector<int64_t> seen_counts;
  torch::Tensor seen_rows;
};

// The routing permutations: forward as index_select, gradients equal to
// index_select's (an index_add) though computed by gathers.
TEST(ModelMoE, PermutationsMatchIndexSelectAndItsGradient) {
  torch::manual_seed(3);
  const int64_t n = 7, k = 3, dim = 5;
  auto order = torch::randperm(n * k, torch::kInt64);
  auto inverse = torch::empty_like(order).scatter_(0, order, torch::arange(n * k, torch::kInt64));
  auto g = torch::randn({n * k, dim}, f64());

  auto x = torch::randn({n, dim}, f64()).requires_grad_(true);
  auto x_ref = x.detach().clone().requires_grad_(true);
  auto y = gather_token_rows(x, order, inverse, k);
  auto y_ref = x_ref.index_select(0, torch::div(order, k, "trunc"));
  EXPECT_TRUE(torch::equal(y, y_ref));
  y.backward(g);
  y_ref.backward(g);
  EXPECT_TRUE(torch::allclose(x.grad(), x_ref.grad(), 1e-12, 1e-12));

  auto r = torch::randn({n * k, dim}, f64()).requires_grad_(true);
  auto r_ref = r.detach().clone().requires_grad_(true);
  auto z = permute_rows(r, inverse, order);
  auto z_ref = r_ref.index_select(0, inverse);
  EXPECT_TRUE(torch::equal(z, z_ref));
  z.backward(g);
  z_ref.backward(g);
  EXPECT_TRUE(torch::equal(r.grad(), r_ref.grad()));  // a permutation: no sums, bit-equal

  EXPECT_THROW(permute_rows(r, order.narrow(0, 0, 4), inverse), c10::Error);
  EXPECT_THROW(gather_token_rows(x, order, inverse, k + 1), c10::Error);
}

TEST(ModelMoE, DispatcherReceivesRowsGroupedByExpert) {
  torch::manual_seed(17);
  MoE moe(tiny_moe());
  randomise(moe);
  auto d = std::make_shared<RecordingDispatcher>(6);
  moe->set_dispatcher(d);
  auto x = torch::randn({1, 10, 12}, f64());
  moe(x);
  ASSERT_EQ(d->seen_counts.size(), 6u);
  EXPECT_EQ(std::accumulate(d->seen_counts.begin(), d->seen_counts.end(), int64_t{0}), 20);
  // Each row of expert e's group is a token that chose e.
  int64_t offset = 0;
  for (int64_t e = 0; e < 6; ++e) {
    for (int64_t r = offset; r < offset + d->seen_counts[e]; ++r) {
      bool found = false;
      for (int64_t n = 0; n < 10 && !found; ++n) {
        auto route = route_token(moe, x[0][n]);
        found = torch::equal(d->seen_rows[r], x[0][n]) &&
                std::find(route.experts.begin(), route.experts.end(), e) != route.experts.end();
      }
      EXPECT_TRUE(found) << "row " << r << " of expert " << e;
    }
    offset += d->seen_counts[e];
  }
  // A dispatcher owning a different number of experts than the layer holds is refused.
  EXPECT_THROW(moe->set_dispatcher(std::make_shared<LocalDispatcher>(3)), c10::Error);
}

TEST(ModelMoE, ShardedLayerWithoutDispatcherIsAnError) {
  MoEOptions o = tiny_moe();
  o.num_local_experts = 3;  // an EP shard
  MoE moe(o);
  EXPECT_EQ(moe->experts->w1.size(0), 3);
  EXPECT_EQ(moe->router->gate->weight.size(0), 6);
  EXPECT_THROW(moe(torch::randn({1, 2, 12}, f64())), c10::Error);
}

}  // namespace
}  // namespace partune::trainer
