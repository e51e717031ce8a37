#include "tuner/prune/pruner.h"

#include <gtest/gtest.h>

using namespace partune;

namespace {
Candidate make(const std::string& id, int64_t lbs, int64_t seq, const std::string& ac, int64_t tp = 1,
               const std::string& sac = "2") {
  Candidate c;
  c.id = id;
  c.config.set("model.name", std::string("qwen3"));
  c.config.set("training.local_batch_size", lbs);
  c.config.set("training.global_batch_size", lbs * 8);
  c.config.set("training.seq_len", seq);
  c.config.set("activation_checkpoint.mode", ac);
  if (ac == "selective") c.config.set("activation_checkpoint.selective_ac_option", sac);
  c.config.set("parallelism.tensor_parallel_degree", tp);
  return c;
}
}  // namespace

TEST(Pruner, OverLimitReasons) {
  HealthRule limit{0.9, true};
  TrialMetrics m;
  EXPECT_FALSE(over_memory_limit(FailureClass::None, m, limit));
  EXPECT_EQ(*over_memory_limit(FailureClass::Oom, m, limit), "out of memory");
  m.memory_pct = 91.0;
  EXPECT_NE(over_memory_limit(FailureClass::None, m, limit)->find("over the 90% headroom"), std::string::npos);
  m.memory_pct = 89.0;
  EXPECT_FALSE(over_memory_limit(FailureClass::None, m, limit));
  m.alloc_retries = 3;
  EXPECT_EQ(*over_memory_limit(FailureClass::None, m, limit), "3 allocation retries");
  EXPECT_FALSE(over_memory_limit(FailureClass::None, m, HealthRule{0.9, false}));
  // A crash is not a memory verdict.
  TrialMetrics clean;
  EXPECT_FALSE(over_memory_limit(FailureClass::Crash, clean, limit));
}

struct DomRow {
  const char* name;
  int64_t lbs;
  int64_t seq;
  const char* ac;
  const char* sac;
  int64_t tp;
  bool dominated;
};

class Dominance : public ::testing::TestWithParam<DomRow> {};

TEST_P(Dominance, AgainstLbs4Seq4096Selective2) {
  const auto trial = make("t", 4, 4096, "selective", 1, "2");
  const DomRow& r = GetParam();
  EXPECT_EQ(needs_more_memory(trial, make("o", r.lbs, r.seq, r.ac, r.tp, r.sac)), r.dominated);
}

INSTANTIATE_TEST_SUITE_P(Table, Dominance,
                         ::testing::Values(DomRow{"same_config", 4, 4096, "selective", "2", 1, false},
                                           DomRow{"larger_lbs", 8, 4096, "selective", "2", 1, true},
                                           DomRow{"longer_seq", 4, 8192, "selective", "2", 1, true},
                                           DomRow{"lighter_ac_none", 4, 4096, "none", "2", 1, true},
                                           DomRow{"heavier_ac_full", 4, 4096, "full", "2", 1, false},
                                           DomRow{"selective_every_4th_saves_less", 4, 4096, "selective", "4", 1, true},
                                           DomRow{"selective_every_layer_saves_more", 4, 4096, "selective", "1", 1,
                                                  false},
                                           DomRow{"larger_lbs_but_full_ac", 8, 4096, "full", "2", 1, false},
                                           DomRow{"smaller_lbs_longer_seq", 2, 8192, "selective", "2", 1, false},
                                           DomRow{"different_tp", 8, 4096, "selective", "2", 2, false},
                                           DomRow{"all_larger", 16, 12288, "none", "2", 1, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Pruner, DominatedByListsOnlyDominatedPending) {
  auto trial = make("t", 4, 4096, "selective");
  auto a = make("a", 8, 4096, "selective");
  auto b = make("b", 2, 4096, "selective");
  auto c = make("c", 4, 4096, "none");
  auto out = dominated_by(trial, "out of memory", {&a, &b, &c, &trial});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].candidate_id, "a");
  EXPECT_EQ(out[1].candidate_id, "c");
  EXPECT_NE(out[0].reason.find("trial t (out of memory)"), std::string::npos);
}
