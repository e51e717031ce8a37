// The planner: one row per torchtitan rule, canonicalisation, duplicates,
// output forms, and the shipped search spaces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/parallel_dims.h"
#include "tuner/plan/planner.h"

namespace partune {
namespace {

constexpr const char* kTp = "parallelism.tensor_parallel_degree";
constexpr const char* kEp = "parallelism.expert_parallel_degree";
constexpr const char* kEtp = "parallelism.expert_tensor_parallel_degree";
constexpr const char* kCp = "parallelism.context_parallel_degree";
constexpr const char* kPp = "parallelism.pipeline_parallel_degree";
constexpr const char* kDpShard = "parallelism.data_parallel_shard_degree";
constexpr const char* kDpRep = "parallelism.data_parallel_replicate_degree";
constexpr const char* kLbs = "training.local_batch_size";
constexpr const char* kGbs = "training.global_batch_size";
constexpr const char* kSeq = "training.seq_len";
constexpr const char* kAc = "activation_checkpoint.mode";
constexpr const char* kSac = "activation_checkpoint.selective_ac_option";

Space make_space(int devices, const std::string& flavor, const std::string& backend = "embedded") {
  Space s;
  s.path = "test.toml";
  s.study.name = "t";
  s.hardware.devices = devices;
  s.backend.kind = backend;
  s.base.set("model.name", std::string("qwen3"));
  s.base.set("model.flavor", flavor);
  return s;
}

// One row per rule: a single point (no axes) and the rule it must break first
// ("" = legal).
struct RuleRow {
  const char* name;
  int world;
  const char* flavor;
  std::vector<std::pair<const char*, int64_t>> set;  // integer keys
  const char* rule;
};

const RuleRow kRules[] = {
    {"legal_default", 8, "30B-A3B", {}, ""},
    {"degree_positive_tp0", 8, "30B-A3B", {{kTp, 0}}, rules::kDegreePositive},
    {"degree_positive_dp_shard0", 8, "30B-A3B", {{kDpShard, 0}}, rules::kDegreePositive},
    {"dp_shard_resolve", 8, "30B-A3B", {{kTp, 3}}, rules::kDpShardResolve},
    {"world_size_product", 8, "30B-A3B", {{kDpShard, 2}, {kTp, 2}}, rules::kWorldSize},
    {"world_size_with_replicate", 8, "30B-A3B", {{kDpRep, 2}, {kDpShard, 2}}, rules::kWorldSize},
    // EP/ETP borrowing, world 8.
    {"tp2_ep4_etp1_legal", 8, "30B-A3B", {{kTp, 2}, {kEp, 4}, {kEtp, 1}}, ""},                      // (4*2) % 4 == 0
    {"tp2_ep4_etp2_legal", 8, "30B-A3B", {{kTp, 2}, {kEp, 4}, {kEtp, 2}}, ""},                      // 4 % 4 == 0
    {"tp2_ep8_etp1_legal", 8, "30B-A3B", {{kTp, 2}, {kEp, 8}, {kEtp, 1}}, ""},                      // (4*2) % 8 == 0
    {"tp2_ep8_etp2_borrow", 8, "30B-A3B", {{kTp, 2}, {kEp, 8}, {kEtp, 2}}, rules::kEpBorrowEtpTp},  // 4 % 8
    {"tp2_ep2_etp3", 8, "30B-A3B", {{kTp, 2}, {kEp, 2}, {kEtp, 3}}, rules::kEtpOneOrTp},
    {"tp1_ep2_etp2", 8, "30B-A3B", {{kEp, 2}, {kEtp, 2}}, rules::kEtpOneOrTp},
    {"tp4_ep4_etp4_borrow", 8, "30B-A3B", {{kTp, 4}, {kEp, 4}, {kEtp, 4}}, rules::kEpBorrowEtpTp},  // 2 % 4
    {"ep_borrow_etp1", 8, "30B-A3B", {{kDpRep, 2}, {kTp, 2}, {kEp, 8}}, rules::kEpBorrowEtp1},      // (2*2) % 8
    {"ep_borrows_cp", 8, "30B-A3B", {{kCp, 2}, {kEp, 8}}, ""},                                      // dp_shard 4 * cp 2
    {"etp_ignored_when_ep1", 8, "30B-A3B", {{kTp, 2}, {kEtp, 3}}, ""},
    // seq_len % (2 * CP * TP)
    {"seq_len_odd", 8, "30B-A3B", {{kSeq, 4095}}, rules::kSeqLenDivisible},
    {"seq_len_tp2", 8, "30B-A3B", {{kTp, 2}, {kSeq, 4098}}, rules::kSeqLenDivisible},
    {"seq_len_cp2_tp2", 8, "30B-A3B", {{kTp, 2}, {kCp, 2}, {kSeq, 4100}}, rules::kSeqLenDivisible},
    {"seq_len_ok", 8, "30B-A3B", {{kTp, 2}, {kCp, 2}, {kSeq, 4104}}, ""},
    // heads / kv heads: 30B-A3B has 32 heads and 4 kv heads; debugmodel_moe 16 and 8.
    {"kv_heads_tp8", 8, "30B-A3B", {{kTp, 8}}, rules::kKvHeadsDivisible},
    {"kv_heads_tp4_ok", 8, "30B-A3B", {{kTp, 4}}, ""},
    {"heads_tp3", 6, "debugmodel_moe", {{kTp, 3}, {kSeq, 2052}}, rules::kHeadsDivisible},
    // experts % EP: 128 experts
    {"experts_ep3", 6, "30B-A3B", {{kEp, 3}}, rules::kExpertsDivisible},
    {"experts_ep8_ok", 8, "30B-A3B", {{kEp, 8}}, ""},
    {"ep_on_dense", 2, "8B", {{kEp, 2}}, rules::kEpNeedsMoe},
    {"pp_unsupported", 2, "30B-A3B", {{kPp, 2}}, rules::kPipelineUnsupported},
    // global_batch_size % (lbs * dp_replicate * dp_shard)
    {"gbs_not_multiple", 8, "30B-A3B", {{kLbs, 4}, {kGbs, 36}}, rules::kGlobalBatch},
    {"gbs_multiple_ok", 8, "30B-A3B", {{kLbs, 4}, {kGbs, 64}}, ""},
    {"gbs_tp_shrinks_dp", 8, "30B-A3B", {{kTp, 2}, {kLbs, 4}, {kGbs, 48}}, ""},  // dp 4: 48 % 16
    {"lbs_zero", 8, "30B-A3B", {{kLbs, 0}}, rules::kGlobalBatch},
};

class PlannerRule : public testing::TestWithParam<RuleRow> {};

TEST_P(PlannerRule, SinglePoint) {
  const RuleRow& row = GetParam();
  Space s = make_space(row.world, row.flavor);
  for (const auto& [key, v] : row.set) s.base.set(key, v);
  PlanResult r = plan(s);
  EXPECT_EQ(r.enumerated, 1);
  if (std::string(row.rule).empty()) {
    EXPECT_EQ(r.candidates.size(), 1u);
    EXPECT_TRUE(r.rejected.empty()) << r.rejected.begin()->first;
  } else {
    EXPECT_TRUE(r.candidates.empty());
    EXPECT_EQ(r.rejected, (std::map<std::string, int64_t>{{row.rule, 1}}));
  }
}

INSTANTIATE_TEST_SUITE_P(Rules, PlannerRule, testing::ValuesIn(kRules),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Planner, NodesMultiplyTheWorld) {
  Space s = make_space(4, "30B-A3B");
  s.hardware.nodes = 2;
  s.base.set(kEp, int64_t{8});
  PlanResult r = plan(s);
  ASSERT_EQ(r.candidates.size(), 1u);
  EXPECT_EQ(r.candidates[0].config.get_int(kDpShard), 8);
}

TEST(Planner, CountsEachRejectionUnderItsFirstRule) {
  // TP 8 on world 8 seq 4097: seq_len and kv heads both fail; seq_len is checked first.
  Space s = make_space(8, "30B-A3B");
  s.axes = {{kTp, {int64_t{8}}}, {kSeq, {int64_t{4097}}}};
  PlanResult r = plan(s);
  EXPECT_EQ(r.rejected, (std::map<std::string, int64_t>{{rules::kSeqLenDivisible, 1}}));
}

TEST(Planner, EnumeratesFirstAxisOutermost) {
  Space s = make_space(1, "debugmodel_moe");
  s.axes = {{kSeq, {int64_t{64}, int64_t{128}}}, {kLbs, {int64_t{1}, int64_t{2}, int64_t{3}}}};
  PlanResult r = plan(s);
  ASSERT_EQ(r.candidates.size(), 6u);
  std::vector<std::pair<int64_t, int64_t>> got;
  for (const auto& c : r.candidates) got.emplace_back(c.config.get_int(kSeq), c.config.get_int(kLbs));
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, int64_t>>{{64, 1}, {64, 2}, {64, 3}, {128, 1}, {128, 2}, {128, 3}}));
  EXPECT_EQ(r.enumerated, 6);
}

TEST(Planner, EtpIsFoldedWhenEpIsOne) {
  Space s = make_space(8, "30B-A3B");
  s.base.set(kTp, int64_t{2});
  s.axes = {{kEtp, {int64_t{1}, int64_t{2}}}, {kEp, {int64_t{1}, int64_t{4}}}};
  PlanResult r = plan(s);
  // (ETP1,EP1) (ETP1,EP4) (ETP2,EP1)=dup of the first (ETP2,EP4)
  EXPECT_EQ(r.enumerated, 4);
  EXPECT_EQ(r.duplicates, 1);
  ASSERT_EQ(r.candidates.size(), 3u);
  EXPECT_EQ(r.candidates[0].axes.at(kEtp), Value{int64_t{1}});
  EXPECT_EQ(r.candidates[0].axes.at(kEp), Value{int64_t{1}});
  EXPECT_EQ(r.candidates[2].axes.at(kEtp), Value{int64_t{2}});
  EXPECT_EQ(r.candidates[2].axes.at(kEp), Value{int64_t{4}});
  std::set<std::string> ids;
  for (const auto& c : r.candidates) ids.insert(c.id);
  EXPECT_EQ(ids.size(), 3u);
}

TEST(Planner, DpShardMinusOneAndItsValueAreOneCandidate) {
  Space s = make_space(8, "30B-A3B");
  s.base.set(kTp, int64_t{2});
  s.axes = {{kDpShard, {int64_t{-1}, int64_t{4}}}};
  PlanResult r = plan(s);
  EXPECT_EQ(r.duplicates, 1);
  ASSERT_EQ(r.candidates.size(), 1u);
  EXPECT_EQ(r.candidates[0].axes.at(kDpShard), Value{int64_t{4}});
  EXPECT_EQ(r.candidates[0].config.get_int(kDpShard), 4);
}

TEST(Planner, GlobalBatchMinusOneResolvesToLbsTimesDp) {
  Space s = make_space(8, "30B-A3B");
  s.base.set(kTp, int64_t{2});  // dp = 4
  s.axes = {{kLbs, {int64_t{3}}}, {kGbs, {int64_t{-1}, int64_t{12}}}};
  PlanResult r = plan(s);
  EXPECT_EQ(r.duplicates, 1);
  ASSERT_EQ(r.candidates.size(), 1u);
  EXPECT_EQ(r.candidates[0].config.get_int(kGbs), 12);
  EXPECT_EQ(r.candidates[0].axes.at(kGbs), Value{int64_t{12}});
}

TEST(Planner, SelectiveOptionMattersOnlyUnderSelectiveAc) {
  Space s = make_space(1, "debugmodel_moe");
  s.axes = {{kAc, {std::string("full"), std::string("selective")}}, {kSac, {std::string("op"), std::string("1")}}};
  PlanResult r = plan(s);
  EXPECT_EQ(r.duplicates, 1);  // full + "op" == full + "1"
  ASSERT_EQ(r.candidates.size(), 3u);
  EXPECT_FALSE(r.candidates[0].config.has(kSac));
  EXPECT_EQ(r.candidates[1].config.get_string(kSac), "op");
  EXPECT_EQ(r.candidates[2].config.get_string(kSac), "1");
}

// Spellings of one job are one candidate, on every backend (torchtitan too).
TEST(Planner, SpellingsOfOneJobAreOneCandidate) {
  for (const char* backend : {"embedded", "torchtitan"}) {
    Space s = make_space(1, "debugmodel_moe", backend);
    s.base.set(kAc, std::string("selective"));
    s.axes = {{kSac, {std::string("2"), std::string("02"), std::string("op")}}};
    PlanResult r = plan(s);
    EXPECT_EQ(r.candidates.size(), 2u) << backend;
    EXPECT_EQ(r.duplicates, 1) << backend;
    Space c = make_space(1, "debugmodel_moe", backend);
    c.base.set("compile.enable", true);
    c.axes = {{"compile.components",
               {StringList{"model", "loss"}, StringList{"loss", "model"}, StringList{"loss", "model", "loss"}}}};
    r = plan(c);
    EXPECT_EQ(r.candidates.size(), 1u) << backend;
    EXPECT_EQ(r.duplicates, 2) << backend;
  }
}

TEST(Planner, CompileComponentsMatterOnlyWhenCompiling) {
  Space s = make_space(1, "debugmodel_moe");
  s.axes = {{"compile.enable", {false, true}},
            {"compile.components", {StringList{"model"}, StringList{"model", "loss"}}}};
  PlanResult r = plan(s);
  EXPECT_EQ(r.duplicates, 1);
  ASSERT_EQ(r.candidates.size(), 3u);
  EXPECT_FALSE(r.candidates[0].config.has("compile.components"));
  EXPECT_EQ(r.candidates[1].config.get_list("compile.components"), (StringList{"model"}));
}

TEST(Planner, CandidateConfigIsBaseMergedWithAxesWithoutTrialSettings) {
  Space s = make_space(8, "30B-A3B");
  s.trial.steps = 20;
  s.base.set("training.steps", int64_t{10000});
  s.base.set("optimizer.lr", 3e-4);
  s.axes = {{kEp, {int64_t{4}}}};
  PlanResult r = plan(s);
  ASSERT_EQ(r.candidates.size(), 1u);
  const JobConfig& c = r.candidates[0].config;
  EXPECT_EQ(c.get_int("training.steps"), 10000);
  EXPECT_TRUE(c.has("training.steps"));  // kept although it is the default
  EXPECT_DOUBLE_EQ(c.get_float("optimizer.lr"), 3e-4);
  EXPECT_EQ(c.get_int(kEp), 4);
  EXPECT_EQ(c.get_string("model.flavor"), "30B-A3B");
  // Every canonical explicit key is written out, resolved.
  for (const auto& key : canonical_explicit_keys()) EXPECT_TRUE(c.has(key)) << key;
  EXPECT_EQ(c.get_int(kDpShard), 8);
  EXPECT_EQ(c.get_int(kGbs), 64);  // lbs 8 (default) * dp 8
}

TEST(Canonicalize, ExplicitDefaultsDoNotChangeTheId) {
  JobConfig a;
  a.set("model.name", std::string("qwen3"));
  a.set("model.flavor", std::string("30B-A3B"));
  JobConfig b = a;
  b.set("job.print_config", false);        // the default
  b.set("metrics.log_freq", int64_t{10});  // the default
  b.set(kTp, int64_t{1});                  // explicit key at its default
  JobConfig ca = canonicalize(a, 8), cb = canonicalize(b, 8);
  EXPECT_EQ(config_id(ca), config_id(cb));
  EXPECT_TRUE(cb.has("job.print_config"));  // kept: the config reads like its base
  EXPECT_TRUE(ca.has(kTp));
  b.set("job.print_config", true);  // not the default: another job
  EXPECT_NE(config_id(canonicalize(b, 8)), config_id(ca));
}

TEST(Canonicalize, IsIdempotent) {
  JobConfig a;
  a.set("model.name", std::string("qwen3"));
  a.set("model.flavor", std::string("30B-A3B"));
  a.set(kTp, int64_t{2});
  a.set(kEtp, int64_t{2});
  a.set(kAc, std::string("full"));
  a.set(kSac, std::string("op"));
  JobConfig once = canonicalize(a, 8);
  EXPECT_EQ(canonicalize(once, 8), once);
  EXPECT_EQ(once.get_int(kEtp), 1);
  EXPECT_FALSE(once.has(kSac));
}

TEST(ConfigId, IsFnv1a64OfTheTomlAs16HexDigits) {
  JobConfig c;
  c.set("model.name", std::string("qwen3"));
  c.set(kTp, int64_t{2});
  c = canonicalize(c, 8);  // no explicit defaults beyond the explicit keys: hashed as is
  const std::string text = c.to_toml();
  uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
  char want[17];
  std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(h));
  EXPECT_EQ(config_id(c), want);
  EXPECT_EQ(config_id(c).size(), 16u);
  JobConfig d = c;
  d.set(kTp, int64_t{4});
  EXPECT_NE(config_id(c), config_id(d));
}

TEST(Planner, UnknownFlavorIsAnErrorForTheEmbeddedTrainer) {
  Space s = make_space(8, "31B-A3B");
  try {
    plan(s);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("test.toml: key 'model.flavor': unknown flavor \"31B-A3B\""),
              std::string::npos)
        << e.what();
  }
}

TEST(Planner, UnknownFlavorSkipsModelRulesForOtherBackends) {
  Space s = make_space(6, "custom-moe", "torchtitan");
  s.axes = {{kTp, {int64_t{3}}}, {kSeq, {int64_t{2052}, int64_t{2048}}}};
  PlanResult r = plan(s);
  // TP 3 passes (heads unknown); seq_len 2048 % 6 still fails.
  ASSERT_EQ(r.candidates.size(), 1u);
  EXPECT_EQ(r.candidates[0].config.get_int(kSeq), 2052);
  EXPECT_EQ(r.rejected, (std::map<std::string, int64_t>{{rules::kSeqLenDivisible, 1}}));
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("custom-moe"), std::string::npos);
}

TEST(Planner, FlavorMayBeAnAxis) {
  Space s = make_space(8, "30B-A3B");
  s.axes = {{"model.flavor", {std::string("30B-A3B"), std::string("30B-A3B-L6")}}, {kTp, {int64_t{8}}}};
  PlanResult r = plan(s);
  EXPECT_EQ(r.rejected, (std::map<std::string, int64_t>{{rules::kKvHeadsDivisible, 2}}));
}

TEST(PlanJson, HasExactlyCandidatesAndRejected) {
  Space s = make_space(8, "30B-A3B");
  s.axes = {{kTp, {int64_t{1}, int64_t{8}}}, {kAc, {std::string("full")}}};
  PlanResult r = plan(s);
  nlohmann::json j = plan_to_json(r);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 2u);
  ASSERT_TRUE(j.at("candidates").is_array());
  ASSERT_EQ(j["candidates"].size(), 1u);
  const auto& c = j["candidates"][0];
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.at("id"), r.candidates[0].id);
  EXPECT_EQ(c.at("config"), (nlohmann::json{{kTp, 1}, {kAc, "full"}}));
  EXPECT_TRUE(c["config"][kTp].is_number_integer());
  EXPECT_EQ(j.at("rejected"), (nlohmann::json{{rules::kKvHeadsDivisible, 1}}));
}

TEST(PlanJson, EmptyPlanStillHasBothKeys) {
  Space s = make_space(8, "30B-A3B");
  s.base.set(kTp, int64_t{3});
  nlohmann::json j = plan_to_json(plan(s));
  EXPECT_EQ(j, (nlohmann::json{{"candidates", nlohmann::json::array()}, {"rejected", {{rules::kDpShardResolve, 1}}}}));
}

TEST(PlanTable, ListsCandidatesAndRejectionCounts) {
  Space s = make_space(8, "30B-A3B");
  s.axes = {{kTp, {int64_t{1}, int64_t{2}, int64_t{8}}}, {kEtp, {int64_t{1}, int64_t{2}}}};
  PlanResult r = plan(s);
  std::string t = plan_to_table(r, s);
  EXPECT_NE(t.find("id"), std::string::npos);
  EXPECT_NE(t.find("TP"), std::string::npos);  // the short names of common/job_keys.h
  EXPECT_NE(t.find("ETP"), std::string::npos);
  for (const auto& c : r.candidates) EXPECT_NE(t.find(c.id), std::string::npos) << t;
  EXPECT_NE(t.find("2 candidates from 6 points: 2 rejected, 2 duplicates"), std::string::npos) << t;
  EXPECT_NE(t.find("  kv_heads_divisible_tp  2"), std::string::npos) << t;
}

TEST(Planner, RefusesAstronomicalSpaces) {
  Space s = make_space(8, "30B-A3B");
  std::vector<Value> many;
  for (int64_t i = 1; i <= 1000; ++i) many.push_back(i);
  s.axes = {{kLbs, many}, {kSeq, many}, {"training.steps", many}};
  EXPECT_THROW(plan(s), InputError);
}

// The shipped spaces, planned end to end.
Space shipped(const char* name) { return load_space(std::string(PARTUNE_SOURCE_DIR) + "/search_spaces/" + name); }

TEST(ShippedSpaces, Qwen3On8xH200) {
  Space s = shipped("qwen3_30b_a3b_8xh200.toml");
  PlanResult r = plan(s);
  // 3 TP x 4 EP x 3 ETP = 36 meshes: 15 legal and distinct, 6 ETP folds (EP=1),
  // 12 with ETP neither 1 nor TP, 3 where EP does not divide dp_shard (ETP=TP);
  // each times 6 lbs x 3 seq_len x 3 AC = 54.
  EXPECT_EQ(r.enumerated, 36 * 54);
  EXPECT_EQ(r.candidates.size(), 15u * 54);
  EXPECT_EQ(r.duplicates, 6 * 54);
  EXPECT_EQ(r.rejected,
            (std::map<std::string, int64_t>{{rules::kEtpOneOrTp, 12 * 54}, {rules::kEpBorrowEtpTp, 3 * 54}}));
  // The hand-tuned best (TP 1, EP 4, ETP 1, lbs 4, seq 12288, selective AC, compiled: ~30% MFU on 8 x H200) is a
  // candidate.
  bool found = false;
  for (const auto& c : r.candidates) {
    const JobConfig& k = c.config;
    found |= k.get_int(kTp) == 1 && k.get_int(kEp) == 4 && k.get_int(kEtp) == 1 && k.get_int(kLbs) == 4 &&
             k.get_int(kSeq) == 12288 && k.get_string(kAc) == "selective" &&
             k.get_bool("compile.enable");  // compiled, as the hand-tuned run
  }
  EXPECT_TRUE(found);
  for (const auto& c : r.candidates) {
    EXPECT_EQ(c.axes.size(), s.axes.size());
    EXPECT_EQ(c.config.get_string("model.flavor"), "30B-A3B");
  }
}

TEST(ShippedSpaces, Qwen3On2Gpus) {
  PlanResult r = plan(shipped("qwen3_30b_a3b_2gpu.toml"));
  // Meshes: TP1 EP1, TP1 EP2 ETP1, TP2 EP1, TP2 EP2 ETP1 legal; 2 ETP folds;
  // TP1 EP2 ETP2 breaks etp_one_or_tp; TP2 EP2 ETP2 needs EP | dp_shard (1).
  EXPECT_EQ(r.enumerated, 8 * 6);
  EXPECT_EQ(r.candidates.size(), 4u * 6);
  EXPECT_EQ(r.duplicates, 2 * 6);
  EXPECT_EQ(r.rejected, (std::map<std::string, int64_t>{{rules::kEtpOneOrTp, 6}, {rules::kEpBorrowEtpTp, 6}}));
  EXPECT_EQ(r.candidates[0].config.get_string("model.flavor"), "30B-A3B-L6");
}

TEST(ShippedSpaces, CpuSmoke) {
  for (const char* name : {"cpu_smoke.toml", "cpu_smoke_command.toml"}) {
    SCOPED_TRACE(name);
    PlanResult r = plan(shipped(name));
    EXPECT_EQ(r.candidates.size(), 12u);
    EXPECT_TRUE(r.rejected.empty());
    EXPECT_EQ(r.duplicates, 0);
  }
}

TEST(ShippedSpaces, PlanIsDeterministic) {
  Space s = shipped("qwen3_30b_a3b_2gpu.toml");
  PlanResult a = plan(s), b = plan(s);
  ASSERT_EQ(a.candidates.size(), b.candidates.size());
  for (size_t i = 0; i < a.candidates.size(); ++i) EXPECT_EQ(a.candidates[i].id, b.candidates[i].id);
}

}  // namespace
}  // namespace partune
