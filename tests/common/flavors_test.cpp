#include "common/flavors.h"

#include <gtest/gtest.h>

#include "common/flops.h"

using namespace partune;

TEST(Flavors, Qwen3MoeGeometryMatchesTorchtitan) {
  auto f = find_flavor("qwen3", "30B-A3B");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->n_kv_heads, 4);
  EXPECT_EQ(f->num_experts, 128);
  EXPECT_EQ(f->top_k, 8);
  EXPECT_TRUE(f->moe);
  EXPECT_FALSE(f->tie_embeddings);
}

TEST(Flavors, UnknownNamesAreNullopt) {
  EXPECT_FALSE(find_flavor("qwen3", "31B"));
  EXPECT_FALSE(find_flavor("llama3", "8B"));
  EXPECT_FALSE(find_flavor("qwen3", "30B-A3B-L"));
  EXPECT_FALSE(find_flavor("qwen3", "30B-A3B-L0"));
  EXPECT_FALSE(find_flavor("qwen3", "30B-A3B-Lx"));
  EXPECT_FALSE(find_flavor("qwen3", "nope-L4"));
}

TEST(Flavors, ReducedDepthKeepsGeometry) {
  auto f = find_flavor("qwen3", "30B-A3B-L6");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->n_layers, 6);
  EXPECT_EQ(f->dim, 2048);
  EXPECT_EQ(f->name, "30B-A3B-L6");
}

TEST(Flops, Qwen3_30B_A3B_ParameterCountIsPublished) {
  auto c = count_params(*find_flavor("qwen3", "30B-A3B"));
  EXPECT_EQ(c.total(), 30'532'122'624);
}

TEST(Flops, Qwen3_30B_A3B_FlopsPerTokenMatchesReference) {
  auto f = *find_flavor("qwen3", "30B-A3B");
  EXPECT_NEAR(flops_per_token(f, 4096) / 1e9, 27.91, 0.01);
  EXPECT_NEAR(flops_per_token(f, 8192) / 1e9, 37.58, 0.01);
}

TEST(Flops, TiedEmbeddingCountedOnce) {
  auto f = *find_flavor("qwen3", "0.6B");
  auto c = count_params(f);
  // Qwen3-0.6B: 596M parameters with tied embeddings (151936*1024 counted once).
  EXPECT_EQ(c.embedding, 151936 * 1024);
  EXPECT_NEAR(c.total() / 1e6, 596.0, 1.0);
}

TEST(Flops, PeakTable) {
  EXPECT_DOUBLE_EQ(*peak_flops_for_device("NVIDIA H100 80GB HBM3"), 989e12);
  EXPECT_DOUBLE_EQ(*peak_flops_for_device("NVIDIA H100 NVL"), 835e12);
  EXPECT_DOUBLE_EQ(*peak_flops_for_device("NVIDIA H100 PCIe"), 756e12);
  EXPECT_DOUBLE_EQ(*peak_flops_for_device("NVIDIA H200"), 989e12);
  EXPECT_DOUBLE_EQ(*peak_flops_for_device("NVIDIA A100-SXM4-80GB"), 312e12);
  EXPECT_FALSE(peak_flops_for_device("cpu"));
}
