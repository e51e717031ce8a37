// The uncalibrated terms: each responds to the knob that drives it.
#include "tuner/estimate/memory_terms.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/flops.h"
#include "tests/estimate/measured_memory.h"

namespace partune {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

JobConfig l4(int64_t lbs = 2, int64_t seq = 4096, const std::string& ac = "2") {
  testing::MemoryMeasurement m;
  m.flavor = "30B-A3B-L4";
  m.lbs = lbs;
  m.seq_len = seq;
  m.ac = ac;
  return testing::config_of(m);
}

MemoryTerms terms(const JobConfig& c, int world = 1, bool cuda = true) {
  auto s = memory_shape(c, world, cuda);
  EXPECT_TRUE(s);
  return embedded_memory_terms(*s);
}

TEST(MemoryTerms, StateIsTheFlavorsParametersInFp32WithTwoMoments) {
  const auto t = terms(l4());
  const double params = double(count_params(*find_flavor("qwen3", "30B-A3B-L4")).total());
  EXPECT_NEAR(t.params, 4 * params / kGiB, 1e-3 * t.params);
  EXPECT_DOUBLE_EQ(t.optimizer, 2 * t.params);
}

TEST(MemoryTerms, FsdpShardsTheStateAndExpertParallelTheExperts) {
  JobConfig c = l4();
  const double one = terms(c).params;
  c.set("parallelism.data_parallel_shard_degree", int64_t{2});
  const double fsdp2 = terms(c, 2).params;
  EXPECT_NEAR(fsdp2, one / 2, 1e-6 * one);
  c.set("parallelism.data_parallel_shard_degree", int64_t{1});
  c.set("parallelism.tensor_parallel_degree", int64_t{2});
  const double tp2 = terms(c, 2).params;  // experts' hidden dim and attention over TP; embeddings replicated
  EXPECT_GT(tp2, fsdp2);
  EXPECT_LT(tp2, one);
}

TEST(MemoryTerms, CheckpointingMoreBlocksSavesLess) {
  const double none = terms(l4(2, 4096, "none")).activations;
  const double every2 = terms(l4(2, 4096, "2")).activations;
  const double op = terms(l4(2, 4096, "op")).activations;
  const double full = terms(l4(2, 4096, "full")).activations;
  EXPECT_LT(full, every2);
  EXPECT_LT(every2, none);
  EXPECT_LT(op, none);
  EXPECT_GT(op, full);
  EXPECT_DOUBLE_EQ(terms(l4(2, 4096, "1")).activations, full);  // selective "1": every block
  EXPECT_DOUBLE_EQ(terms(l4(2, 4096, "0")).activations, full);
}

TEST(MemoryTerms, LogitsGrowWithTokensFourteenBytesEagerFourCompiled) {
  JobConfig c = l4(2, 4096);
  const auto small = terms(c);
  c.set("training.seq_len", int64_t{8192});
  const auto big = terms(c);
  EXPECT_NEAR(big.logits, 2 * small.logits, 1e-9);
  // 14 bytes per token and vocabulary entry: bf16 logits, then fp32 logits,
  // log-softmax and their gradient.
  EXPECT_NEAR(big.logits, 14.0 * 2 * 8192 * 151936 / kGiB, 1e-9);
  c.set("compile.enable", true);
  const auto compiled = terms(c);
  // Compiled: bf16 logits and their softmax (compiled torchtitan's bf16
  // logits and gradient); the gradients of hidden and weight come once the
  // logits are gone, so at this size they do not add to the loss's peak.
  const double T = 2 * 8192, V = 151936;
  EXPECT_NEAR(compiled.logits, 4 * T * V / kGiB, 1e-9);
  EXPECT_LT(compiled.activations, big.activations);
}

TEST(MemoryTerms, GradientAccumulationKeepsEveryGradientThroughTheNextLoss) {
  JobConfig c = l4(2, 4096);
  const auto one = terms(c);
  EXPECT_LT(one.grads, one.params);                 // the gradients reuse what the loss freed
  c.set("training.global_batch_size", int64_t{4});  // two microbatches of 2
  const auto two = terms(c);
  EXPECT_GE(two.grads, two.params);  // fp32, as large as the parameters
  EXPECT_GT(two.total(), one.total() + 0.9 * one.params);
}

TEST(MemoryTerms, LossParallelShardsTheLogitsOverTp) {
  JobConfig c = l4();
  c.set("parallelism.data_parallel_shard_degree", int64_t{1});
  c.set("parallelism.tensor_parallel_degree", int64_t{2});
  auto s = memory_shape(c, 2, true);
  ASSERT_TRUE(s);
  const double replicated = embedded_memory_terms(*s).logits;
  s->loss_parallel = true;
  EXPECT_DOUBLE_EQ(embedded_memory_terms(*s).logits, replicated / 2);
}

TEST(MemoryTerms, CpuComputesInFloat32WithoutWeightCopies) {
  const auto cpu = terms(l4(), 1, false);
  const auto gpu = terms(l4(), 1, true);
  EXPECT_EQ(cpu.transient, 0);
  EXPECT_GT(gpu.transient, 0);
  EXPECT_DOUBLE_EQ(cpu.params, gpu.params);
}

TEST(MemoryTerms, UnknownFlavorHasNoShape) {
  JobConfig c = l4();
  c.set("model.flavor", std::string("no-such-flavor"));
  EXPECT_FALSE(memory_shape(c, 1, true));
}

TEST(MemoryTerms, UnusableValuesNameTheirKey) {
  JobConfig c = l4(2, 4096, "every-other");
  try {
    memory_shape(c, 1, true);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("activation_checkpoint.selective_ac_option"), std::string::npos) << e.what();
  }
  JobConfig d = l4();
  d.set("parallelism.tensor_parallel_degree", int64_t{3});
  EXPECT_THROW(memory_shape(d, 2, true), InputError);
}

}  // namespace
}  // namespace partune
