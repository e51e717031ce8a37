// trainer/train: gradient clipping, the step with gradient accumulation, and
// the loss falling on synthetic data for a tiny dense and a tiny MoE flavor.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <sstream>

#include "model_testing.h"
#include "trainer/train/trainer.h"

namespace partune::trainer {
namespace {

// One process: the parallel state over size-1 groups, as the trainer builds it.
ParallelModelState one_process_state() {
  Distributed d = single_process(torch::kCPU);
  ParallelDims dims;
  dims.dp_shard = 1;
  ParallelModelState st;
  st.groups = d.create_mesh_groups(MeshLayout(dims, 1));
  st.world = d.world();
  return st;
}

TEST(AppTrain, ClipGradNormReturnsPreClipNormAndScales) {
  const ParallelModelState st = one_process_state();
  auto a = torch::tensor({3.0f, 0.0f}).requires_grad_();
  auto b = torch::tensor({4.0f}).requires_grad_();
  auto c = torch::tensor({1.0f}).requires_grad_();  // no gradient: skipped
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  const double norm = st.clip_grad_norm({a, b, c}, 1.0).item<double>();
  EXPECT_DOUBLE_EQ(norm, 5.0);  // sqrt(3^2 + 4^2), before clipping
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 * coef, 1e-6);
  EXPECT_NEAR(b.grad()[0].item<double>(), 4.0 * coef, 1e-6);
  EXPECT_FALSE(c.grad().defined());
  // Below max_norm nothing changes.
  a.mutable_grad() = torch::tensor({0.3f, 0.4f});
  b.mutable_grad() = torch::tensor({0.0f});
  EXPECT_NEAR(st.clip_grad_norm({a, b}, 1.0).item<double>(), 0.5, 1e-7);
  EXPECT_NEAR(a.grad()[1].item<double>(), 0.4, 1e-7);
}

TrainerConfig tiny_config(bool moe) {
  TrainerConfig c;
  c.model_name = "qwen3";
  c.flavor = testing::tiny_flavor(moe);
  c.local_batch_size = 8;
  c.global_batch_size = 8;
  c.grad_accum_steps = 1;
  c.seq_len = 32;
  c.steps = 50;
  c.max_norm = 1.0;
  c.mixed_precision_param = "float32";
  c.optimizer.lr = 1e-2;
  c.optimizer.weight_decay = 0.0;
  c.lr_scheduler.warmup_steps = 5;
  c.ac = {ACMode::None, 1};
  c.log_freq = 10;
  c.seed = 3;
  return c;
}

std::vector<double> train_losses(const TrainerConfig& c, std::ostream& out) {
  MetricsFile file(std::nullopt, 0);
  Trainer t(c, torch::kCPU, out, file);
  std::vector<double> losses;
  for (int64_t i = 0; i < c.steps; ++i) {
    StepResult r = t.train_step();
    EXPECT_EQ(r.step, i + 1);
    EXPECT_TRUE(std::isfinite(r.grad_norm_value()));
    losses.push_back(r.loss_value());
  }
  return losses;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  return std::accumulate(v.begin() + static_cast<long>(from), v.begin() + static_cast<long>(to), 0.0) /
         static_cast<double>(to - from);
}

void expect_loss_falls(bool moe) {
  std::ostringstream out;
  std::vector<double> l = train_losses(tiny_config(moe), out);
  // Starts at or above chance, ln(vocab) = ln 64 = 4.16; the chain's floor
  // is ~ln 4 = 1.39.
  const double first = mean(l, 0, 5), last = mean(l, 45, 50);
  EXPECT_GT(l[0], std::log(64.0) - 0.5);
  EXPECT_LT(last, first - 1.0) << "first " << first << " last " << last;
  EXPECT_LT(last, std::log(64.0) - 1.0) << "last " << last;  // well below chance: the chain was learnt
}

TEST(AppTrain, LossFallsDense) { expect_loss_falls(false); }
TEST(AppTrain, LossFallsMoE) { expect_loss_falls(true); }

// Two microbatches of 4 give the same step as one batch of 8 (the synthetic
// rows are the same, the loss is normalised by the step's valid tokens).
TEST(AppTrain, GradientAccumulationEqualsTheLargerBatch) {
  TrainerConfig one = tiny_config(true);
  TrainerConfig two = one;
  two.local_batch_size = 4;
  two.grad_accum_steps = 2;
  std::ostringstream out;
  MetricsFile file(std::nullopt, 0);
  Trainer a(one, torch::kCPU, out, file), b(two, torch::kCPU, out, file);
  for (int i = 0; i < 2; ++i) {
    StepResult ra = a.train_step(), rb = b.train_step();
    EXPECT_EQ(ra.tokens, rb.tokens);
    EXPECT_NEAR(ra.loss_value(), rb.loss_value(), 1e-5);
    EXPECT_NEAR(ra.grad_norm_value(), rb.grad_norm_value(), 1e-4 * ra.grad_norm_value());
  }
  auto pa = a.model()->named_parameters(), pb = b.model()->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::allclose(p.value(), pb[p.key()], 1e-4, 1e-5)) << p.key();
}

TEST(AppTrain, LrFollowsTheSchedule) {
  TrainerConfig c = tiny_config(false);
  c.steps = 4;
  c.lr_scheduler.warmup_steps = 2;
  std::ostringstream out;
  MetricsFile file(std::nullopt, 0);
  Trainer t(c, torch::kCPU, out, file);
  const double expected[] = {0.5e-2, 1e-2, 1e-2, 0.5e-2};  // warmup 2, stable 1, decay 2 (linear)
  for (double lr : expected) EXPECT_DOUBLE_EQ(t.train_step().lr, lr);
}

TEST(AppTrain, TrainPrintsInitAndStepLines) {
  TrainerConfig c = tiny_config(false);
  c.steps = 4;
  c.log_freq = 2;
  c.notes = {"a note"};
  std::ostringstream out;
  MetricsFile file(std::nullopt, 0);
  Trainer t(c, torch::kCPU, out, file);
  t.log_init();
  t.train();
  const std::string s = out.str();
  EXPECT_NE(s.find("Note: a note\n"), std::string::npos);
  EXPECT_NE(s.find("Trainer is initialized with local batch size 8, global batch size 8, gradient accumulation "
                   "steps 1, sequence length 32, total steps 4 (warmup 5)"),
            std::string::npos);
  EXPECT_NE(s.find("Warmup steps (5) exceed total steps (4). Adjusting warmup steps to 4."), std::string::npos);
  EXPECT_NE(s.find("\nstep:  1  loss: "), std::string::npos);
  EXPECT_NE(s.find("\nstep:  2  loss: "), std::string::npos);
  EXPECT_EQ(s.find("\nstep:  3  loss: "), std::string::npos);
  EXPECT_NE(s.find("\nstep:  4  loss: "), std::string::npos);
}

}  // namespace
}  // namespace partune::trainer
