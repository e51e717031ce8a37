#include "common/parallel_dims.h"

#include <gtest/gtest.h>

using namespace partune;

namespace {
struct Row {
  const char* name;
  int world, dp_r, dp_s, cp, tp, ep, etp;
  const char* rule;  // first violated rule, "" = legal
  int resolved_dp_shard;
};

const Row kRows[] = {
    {"fsdp_takes_rest", 8, 1, -1, 1, 2, 1, 1, "", 4},
    {"explicit_product_ok", 8, 2, 2, 1, 2, 1, 1, "", 2},
    {"product_mismatch", 8, 1, 2, 1, 2, 1, 1, rules::kWorldSize, 2},
    {"unresolvable_rest", 8, 1, -1, 1, 3, 1, 1, rules::kDpShardResolve, -1},
    {"zero_degree", 8, 1, -1, 1, 0, 1, 1, rules::kDegreePositive, -1},
    {"bad_dp_shard", 8, 1, -3, 1, 1, 1, 1, rules::kDegreePositive, -3},
    {"etp_neither_one_nor_tp", 8, 1, -1, 1, 2, 2, 4, rules::kEtpOneOrTp, 4},
    {"etp_ignored_without_ep", 8, 1, -1, 1, 2, 1, 4, "", 4},
    {"ep4_tp2_etp1_borrows_tp", 8, 1, -1, 1, 2, 4, 1, "", 4},
    {"ep8_tp2_etp1_borrows_tp", 8, 1, -1, 1, 2, 8, 1, "", 4},
    {"ep8_tp2_etp2_too_big", 8, 1, -1, 1, 2, 8, 2, rules::kEpBorrowEtpTp, 4},
    {"ep4_tp2_etp2_ok", 8, 1, -1, 1, 2, 4, 2, "", 4},
    {"ep2_tp4_etp1_v022_ok", 8, 1, -1, 1, 4, 2, 1, "", 2},
    {"ep_16_over_world", 8, 1, -1, 1, 1, 16, 1, rules::kEpBorrowEtp1, 8},
    {"ep3_not_dividing", 8, 1, -1, 1, 1, 3, 1, rules::kEpBorrowEtp1, 8},
    {"ep_borrows_cp", 8, 1, -1, 2, 1, 8, 1, "", 4},
};
}  // namespace

class ParallelDimsRules : public ::testing::TestWithParam<Row> {};

TEST_P(ParallelDimsRules, FirstViolationAndResolution) {
  const Row& r = GetParam();
  ParallelDims d{r.dp_r, r.dp_s, r.cp, r.tp, 1, r.ep, r.etp};
  auto v = check_parallel_dims(d, r.world);
  if (std::string(r.rule).empty()) {
    EXPECT_TRUE(v.empty()) << v.front().rule << ": " << v.front().message;
  } else {
    ASSERT_FALSE(v.empty());
    EXPECT_EQ(v.front().rule, r.rule) << v.front().message;
  }
  EXPECT_EQ(d.dp_shard, r.resolved_dp_shard);
}

INSTANTIATE_TEST_SUITE_P(Table, ParallelDimsRules, ::testing::ValuesIn(kRows),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ModelRules, Qwen3_30B_A3B) {
  auto f = *find_flavor("qwen3", "30B-A3B");
  ParallelDims d{1, 1, 1, 8, 1, 1, 1};
  auto v = check_model_rules(d, f, {4, -1, 4096});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].rule, rules::kKvHeadsDivisible);

  d = {1, 8, 1, 1, 1, 3, 1};
  v = check_model_rules(d, f, {4, -1, 4096});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].rule, rules::kExpertsDivisible);

  d = {1, 2, 1, 4, 1, 1, 1};
  v = check_model_rules(d, f, {4, -1, 4100});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].rule, rules::kSeqLenDivisible);

  d = {1, 8, 1, 1, 1, 1, 1};
  v = check_model_rules(d, f, {4, 12, 4096});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].rule, rules::kGlobalBatch);
  EXPECT_TRUE(check_model_rules(d, f, {4, 64, 4096}).empty());
  EXPECT_EQ(grad_accumulation_steps(d, {4, 64, 4096}), 2);
}

TEST(ModelRules, DenseFlavorRejectsEp) {
  auto f = *find_flavor("qwen3", "8B");
  ParallelDims d{1, 8, 1, 1, 1, 2, 1};
  auto v = check_model_rules(d, f, {1, -1, 2048});
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v[0].rule, rules::kEpNeedsMoe);
}

TEST(ModelRules, PipelineUnsupported) {
  auto f = *find_flavor("qwen3", "8B");
  ParallelDims d{1, 4, 1, 1, 2, 1, 1};
  auto v = check_model_rules(d, f, {1, -1, 2048});
  ASSERT_FALSE(v.empty());
  EXPECT_EQ(v[0].rule, rules::kPipelineUnsupported);
}
