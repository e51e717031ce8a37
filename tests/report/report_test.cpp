// The health rule, the ranking, the JSON users script against, and the tables.
#include "tuner/report/report.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/store/test_support.h"

namespace partune {
namespace {

TrialRecord done(const std::string& id, double mfu, double memory_pct = 50.0, int64_t retries = 0, double tps = 1000) {
  const Candidate c = testing::candidate(1, 1, 2);
  TrialRecord r;
  r.study = "moe";
  r.id = id;
  r.status = TrialStatus::Done;
  r.axes = c.axes;
  r.config = c.config;
  r.attempt = 1;
  r.metrics.mfu = mfu;
  r.metrics.tps = tps;
  r.metrics.tflops = mfu * 9.89;
  r.metrics.memory_gib = memory_pct * 0.8;
  r.metrics.memory_pct = memory_pct;
  r.metrics.alloc_retries = retries;
  r.metrics.counted_steps = 10;
  r.wall_s = 42.0;
  r.finished_at = "2025-06-01T03:04:05Z";
  return r;
}

TrialRecord failed(const std::string& id, FailureClass f, const std::string& reason) {
  TrialRecord r = done(id, 0);
  r.status = TrialStatus::Failed;
  r.failure = f;
  r.reason = reason;
  r.metrics = {};
  return r;
}

std::vector<std::string> ids(const std::vector<TrialRecord>& trials) {
  std::vector<std::string> out;
  for (const auto& t : trials) out.push_back(t.id);
  return out;
}

struct HealthCase {
  std::string name;
  TrialRecord record;
  double headroom;
  bool healthy;
};

class Health : public ::testing::TestWithParam<HealthCase> {};

TEST_P(Health, Rule) { EXPECT_EQ(is_healthy(GetParam().record, HealthRule{GetParam().headroom}), GetParam().healthy); }

TrialRecord without_memory() {
  TrialRecord r = done("m", 30);
  r.metrics.memory_pct.reset();
  r.metrics.memory_gib.reset();
  return r;
}
TrialRecord with_status(TrialStatus s) {
  TrialRecord r = done("s", 30);
  r.status = s;
  return r;
}

INSTANTIATE_TEST_SUITE_P(Rows, Health,
                         ::testing::Values(HealthCase{"DoneWithinHeadroom", done("a", 30, 80.0), 0.90, true},
                                           HealthCase{"ExactlyAtHeadroom", done("a", 30, 90.0), 0.90, true},
                                           HealthCase{"OverHeadroom", done("a", 30, 90.01), 0.90, false},
                                           HealthCase{"TighterHeadroom", done("a", 30, 80.0), 0.75, false},
                                           HealthCase{"AllocRetries", done("a", 30, 50.0, 1), 0.90, false},
                                           HealthCase{"MemoryUnknown", without_memory(), 0.90, true},
                                           HealthCase{"Failed", failed("a", FailureClass::Oom, "OOM"), 0.90, false},
                                           HealthCase{"Pending", with_status(TrialStatus::Pending), 0.90, false},
                                           HealthCase{"Running", with_status(TrialStatus::Running), 0.90, false},
                                           HealthCase{"Pruned", with_status(TrialStatus::Pruned), 0.90, false}),
                         [](const auto& info) { return info.param.name; });

TEST(RankBest, BestFirstTiesByIdHealthyOnly) {
  std::vector<TrialRecord> trials = {
      done("c", 30.0),
      done("retries", 45.0, 50.0, 3),
      done("b", 35.0),
      done("edge", 40.0, 95.0),
      failed("oom", FailureClass::Oom, "CUDA out of memory"),
      done("a", 30.0),
      done("d", 20.0),
  };
  TrialRecord no_mfu = done("no-mfu", 0);
  no_mfu.metrics.mfu.reset();
  trials.push_back(no_mfu);

  EXPECT_EQ(ids(rank_best(trials, "mfu", 0, HealthRule{0.90}, false)), (std::vector<std::string>{"b", "a", "c", "d"}));
  EXPECT_EQ(ids(rank_best(trials, "mfu", 2, HealthRule{0.90}, false)), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(ids(rank_best(trials, "mfu", 0, HealthRule{0.90}, true)),
            (std::vector<std::string>{"retries", "edge", "b", "a", "c", "d"}));
  // A looser headroom admits the trial at 95% memory.
  EXPECT_EQ(ids(rank_best(trials, "mfu", 1, HealthRule{0.96}, false)), std::vector<std::string>{"edge"});
  // A study whose rule does not count allocation retries ranks that trial as healthy.
  EXPECT_EQ(ids(rank_best(trials, "mfu", 1, HealthRule{0.90, false}, false)), std::vector<std::string>{"retries"});
}

TEST(RankBest, IncludeAllFlagsTheUnhealthyInJson) {
  const auto ranked = rank_best({done("ok", 30.0), done("hot", 40.0, 99.0)}, "mfu", 0, HealthRule{0.90}, true);
  ASSERT_EQ(ids(ranked), (std::vector<std::string>{"hot", "ok"}));
  EXPECT_FALSE(trial_to_json(ranked[0], false, HealthRule{0.90})["healthy"].get<bool>());
  EXPECT_TRUE(trial_to_json(ranked[1], false, HealthRule{0.90})["healthy"].get<bool>());
}

TEST(RankBest, ObjectiveChoosesTheMetric) {
  std::vector<TrialRecord> trials = {done("high-mfu", 40.0, 50.0, 0, 1000), done("high-tps", 30.0, 50.0, 0, 5000)};
  EXPECT_EQ(rank_best(trials, "mfu", 1).front().id, "high-mfu");
  EXPECT_EQ(rank_best(trials, "tps", 1).front().id, "high-tps");
  EXPECT_EQ(rank_best(trials, "tflops", 1).front().id, "high-mfu");
}

TEST(RankBest, UnknownObjectiveIsAnInputError) {
  try {
    rank_best({}, "loss", 1);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "objective 'loss': expected mfu, tps or tflops");
  }
}

TEST(TrialJson, ShapeOfADoneTrial) {
  const nlohmann::json j = trial_to_json(done("abc", 31.25), false);
  for (const char* key : {"id", "status", "failure", "reason", "config", "metrics", "attempt", "wall_s", "source",
                          "healthy", "study", "started_at", "finished_at", "pruned_by"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["id"], "abc");
  EXPECT_EQ(j["status"], "done");
  EXPECT_TRUE(j["failure"].is_null());
  EXPECT_EQ(j["reason"], "");
  EXPECT_EQ(j["source"], "tune");
  EXPECT_EQ(j["attempt"], 1);
  EXPECT_EQ(j["wall_s"], 42.0);
  EXPECT_EQ(j["healthy"], true);
  // config: the axes only, as "section.key": value with JSON types.
  EXPECT_EQ(j["config"], (nlohmann::json{{"activation_checkpoint.mode", "selective"},
                                         {"parallelism.expert_parallel_degree", 1},
                                         {"parallelism.tensor_parallel_degree", 1},
                                         {"training.local_batch_size", 2}}));
  const auto& m = j["metrics"];
  for (const char* key : {"mfu", "tps", "tflops", "memory_gib", "memory_pct", "alloc_retries"})
    EXPECT_TRUE(m.contains(key)) << key;
  EXPECT_EQ(m["mfu"], 31.25);
  EXPECT_EQ(m["memory_pct"], 50.0);
  EXPECT_EQ(m["alloc_retries"], 0);
  EXPECT_FALSE(j.contains("steps"));
  EXPECT_FALSE(j.contains("job_config"));
}

TEST(TrialJson, UnknownIsNullNotZero) {
  TrialRecord pending = done("p", 0);
  pending.status = TrialStatus::Pending;
  pending.attempt = 0;
  pending.metrics = {};
  pending.wall_s.reset();
  pending.finished_at.clear();
  const nlohmann::json j = trial_to_json(pending, false);
  for (const char* key : {"mfu", "tps", "tflops", "memory_gib", "memory_pct", "alloc_retries"})
    EXPECT_TRUE(j["metrics"][key].is_null()) << key;
  EXPECT_TRUE(j["wall_s"].is_null());
  EXPECT_TRUE(j["finished_at"].is_null());
  EXPECT_EQ(j["healthy"], false);
}

TEST(TrialJson, FailedAndPruned) {
  const nlohmann::json f = trial_to_json(failed("x", FailureClass::Nccl, "NCCL watchdog timeout"), false);
  EXPECT_EQ(f["status"], "failed");
  EXPECT_EQ(f["failure"], "nccl");
  EXPECT_EQ(f["reason"], "NCCL watchdog timeout");

  TrialRecord p = done("y", 0);
  p.status = TrialStatus::Pruned;
  p.attempt = 0;
  p.metrics = {};
  p.reason = "local_batch_size 4 > 2, which OOMed";
  p.pruned_by = "x";
  const nlohmann::json pj = trial_to_json(p, false);
  EXPECT_EQ(pj["status"], "pruned");
  EXPECT_TRUE(pj["failure"].is_null());
  EXPECT_EQ(pj["pruned_by"], "x");
  EXPECT_TRUE(pj["metrics"]["alloc_retries"].is_null());
}

TEST(TrialJson, WithStepsAddsStepsAndTheFullConfig) {
  TrialRecord r = done("s", 30);
  StepRow a;
  a.step = 1;
  a.loss = 10.5;
  a.mfu = 29.5;
  StepRow b;
  b.step = 2;
  r.steps = {a, b};
  const nlohmann::json j = trial_to_json(r, true);
  ASSERT_EQ(j["steps"].size(), 2u);
  EXPECT_EQ(j["steps"][0]["step"], 1);
  EXPECT_EQ(j["steps"][0]["loss"], 10.5);
  EXPECT_EQ(j["steps"][0]["mfu"], 29.5);
  EXPECT_TRUE(j["steps"][1]["loss"].is_null());
  EXPECT_EQ(j["job_config"]["model.flavor"], "30B-A3B");
  EXPECT_EQ(j["job_config"].size(), r.config.values().size());
}

TEST(Table, OneRowATrialWithShortAxisNames) {
  std::vector<TrialRecord> trials = {done("t1", 31.25, 51.17, 0, 12345.4),
                                     failed("t2", FailureClass::Oom, "CUDA out of memory")};
  const std::string table = trials_table(trials);
  const std::string header = table.substr(0, table.find('\n'));
  for (const char* col : {"id", "status", "TP", "EP", "lbs", "ac", "mfu%", "tps", "memory", "retries", "note"})
    EXPECT_NE(header.find(col), std::string::npos) << col << " in " << header;
  EXPECT_NE(table.find("31.25"), std::string::npos) << table;
  EXPECT_NE(table.find("12,345"), std::string::npos) << table;
  EXPECT_NE(table.find("40.94GiB(51.17%)"), std::string::npos) << table;
  EXPECT_NE(table.find("oom: CUDA out of memory"), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 3);
}

TEST(Table, ColumnsLineUp) {
  const std::string table = trials_table({done("short", 5.0), done("a-much-longer-id", 45.5)});
  std::vector<std::string> lines;
  for (size_t at = 0, nl; (nl = table.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(table.substr(at, nl - at));
  ASSERT_EQ(lines.size(), 3u);
  // "status" starts at the same column on every line.
  const size_t col = lines[0].find("status");
  EXPECT_EQ(lines[1].find("done"), col);
  EXPECT_EQ(lines[2].find("done"), col);
}

TEST(Table, RankAndHealthColumns) {
  const auto ranked = rank_best({done("ok", 30.0), done("hot", 40.0, 99.0)}, "mfu", 0, HealthRule{0.90}, true);
  const std::string table = trials_table(ranked, {.rank = true, .health = true, .health_rule = {0.90, true}});
  EXPECT_EQ(table.rfind("#", 0), 0u) << table;
  EXPECT_NE(table.find("healthy"), std::string::npos);
  const size_t hot = table.find("hot"), ok = table.find("ok");
  ASSERT_LT(hot, ok);
  EXPECT_NE(table.substr(hot, table.find('\n', hot) - hot).find("no"), std::string::npos) << table;
}

TEST(Table, CollidingShortNamesUseTheFullKey) {
  TrialRecord r = done("x", 30);
  r.axes = {{"training.steps", int64_t{20}}, {"lr_scheduler.warmup_steps", int64_t{2}}};
  TrialRecord s = r;
  s.axes = {{"lr_scheduler.steps", int64_t{3}}};  // not a real key: only its name matters here
  const std::string table = trials_table({r, s});
  EXPECT_NE(table.find("training.steps"), std::string::npos) << table;
  EXPECT_NE(table.find("warmup_steps"), std::string::npos) << table;
}

TEST(Detail, ShowsSummaryHealthConfigAndSteps) {
  TrialRecord r = done("d1", 31.25, 50.0, 3);
  r.log_dir = "results/moe/trial-d1";
  StepRow s;
  s.step = 7;
  s.loss = 7.12345;
  s.grad_norm = 1.2034;
  s.memory_gib = 71.5;
  s.memory_pct = 51.17;
  s.tps = 12345;
  s.tflops = 345.67;
  s.mfu = 34.95;
  r.steps = {s};
  const std::string text = trial_detail(r);
  for (const char* part : {"trial d1", "status: done", "attempt: 1", "logs: results/moe/trial-d1",
                           "parallelism.tensor_parallel_degree = 1", "mfu: 31.25%", "alloc retries: 3",
                           "healthy: no (3 allocation retries)", "[model]", "flavor = \"30B-A3B\"",
                           "steps (attempt 1):", "7.12345", "1.2034", "71.50GiB(51.17%)", "12,345", "345.67", "34.95"})
    EXPECT_NE(text.find(part), std::string::npos) << part << " in\n" << text;
}

TEST(Detail, MemoryOverHeadroomIsTheReason) {
  const std::string text = trial_detail(done("d2", 30.0, 95.5), HealthRule{0.90});
  EXPECT_NE(text.find("healthy: no (memory 95.50% over the 90% headroom)"), std::string::npos) << text;
  EXPECT_NE(text.find("steps (attempt 1): none"), std::string::npos) << text;
}

}  // namespace
}  // namespace partune
