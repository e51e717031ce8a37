// Schema version 3: the study's health rule as typed columns, migrated from
// the facts_json of a version-2 database, and the healthy_trials view, which
// must call healthy exactly the trials tuner/trial/health.h does.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <set>

#include "tests/store/test_support.h"
#include "tuner/store/schema.h"
#include "tuner/store/store.h"

namespace partune {
namespace {

using testing::candidate;
using testing::TempDir;

std::set<std::string> column_of(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  std::set<std::string> out;
  while (sqlite3_step(s) == SQLITE_ROW)
    out.insert(sqlite3_column_text(s, 0) ? reinterpret_cast<const char*>(sqlite3_column_text(s, 0)) : "NULL");
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

TEST(HealthView, AVersion2DatabaseGetsItsRuleAsTypedColumns) {
  TempDir dir;
  const std::string path = dir.file("v2.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, schema::kVersion1, nullptr, nullptr, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, schema::kVersion2, nullptr, nullptr, nullptr), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "PRAGMA user_version = 2;"
                     "INSERT INTO studies (name, created_at, facts_json) VALUES ('strict', '2026-01-01T00:00:00Z',"
                     " '{\"memory_headroom\": 0.8, \"alloc_retries_over_limit\": false}');"
                     "INSERT INTO studies (name, created_at) VALUES ('bare', '2026-01-01T00:00:00Z');"
                     "INSERT INTO trials (study, id, plan_index, status, config_json, axes_json, memory_pct, "
                     "alloc_retries, oom_errors) VALUES ('strict', 'a', 0, 'done', '{}', '{}', 79.5, 3, 0),"
                     " ('strict', 'b', 1, 'done', '{}', '{}', 80.5, 0, 0),"
                     " ('bare', 'c', 0, 'done', '{}', '{}', 85.0, 0, 0),"
                     " ('bare', 'd', 1, 'done', '{}', '{}', 50.0, 2, 0);",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  Store store = Store::open(path);
  const auto strict = store.study("strict");
  ASSERT_TRUE(strict);
  EXPECT_DOUBLE_EQ(strict->health.memory_headroom, 0.8);
  EXPECT_FALSE(strict->health.alloc_retries_over_limit);
  const auto bare = store.study("bare");  // no rule recorded: the defaults
  ASSERT_TRUE(bare);
  EXPECT_DOUBLE_EQ(bare->health.memory_headroom, kDefaultMemoryHeadroom);
  EXPECT_TRUE(bare->health.alloc_retries_over_limit);
  EXPECT_EQ(column_of(path, "SELECT memory_headroom || '/' || alloc_retries_over_limit FROM studies"),
            (std::set<std::string>{"0.8/0", "0.9/1"}));
  // 'a' has retries the strict study does not count; 'b' is over 80%; 'd' has retries.
  EXPECT_EQ(column_of(path, "SELECT id FROM healthy_trials"), (std::set<std::string>{"a", "c"}));
}

TEST(HealthView, EnsureStudyWritesTheRule) {
  TempDir dir;
  Store store = Store::open(dir.file("s.db"));
  StudyRow row;
  row.name = "s";
  row.objective = "mfu";
  row.health.memory_headroom = 0.75;
  row.health.alloc_retries_over_limit = false;
  store.ensure_study(row);
  EXPECT_DOUBLE_EQ(store.study("s")->health.memory_headroom, 0.75);
  EXPECT_FALSE(store.study("s")->health.alloc_retries_over_limit);
  row.health = HealthRule{};  // a later run with another rule replaces it
  store.ensure_study(row);
  EXPECT_DOUBLE_EQ(store.study("s")->health.memory_headroom, kDefaultMemoryHeadroom);
  EXPECT_TRUE(store.study("s")->health.alloc_retries_over_limit);
}

// Every way a trial can end, under two rules: the view and unhealthy_because
// agree trial by trial.
TEST(HealthView, AgreesWithTheHealthRuleOnEveryKindOfOutcome) {
  TempDir dir;
  const std::string path = dir.file("s.db");
  Store store = Store::open(path);
  struct Outcome {
    TrialStatus status;
    FailureClass failure;
    std::optional<double> memory_pct;
    int64_t retries, ooms;
  };
  const std::vector<Outcome> outcomes = {
      {TrialStatus::Done, FailureClass::None, 50.0, 0, 0},
      {TrialStatus::Done, FailureClass::None, 90.0, 0, 0},
      {TrialStatus::Done, FailureClass::None, 90.01, 0, 0},
      {TrialStatus::Done, FailureClass::None, 75.0, 0, 0},
      {TrialStatus::Done, FailureClass::None, 60.0, 4, 0},
      {TrialStatus::Done, FailureClass::None, 60.0, 0, 1},
      {TrialStatus::Done, FailureClass::None, std::nullopt, 0, 0},
      {TrialStatus::Failed, FailureClass::Oom, 99.0, 0, 1},
      {TrialStatus::Failed, FailureClass::Hang, 40.0, 0, 0},
      {TrialStatus::Pruned, FailureClass::None, 95.0, 0, 0},
  };
  std::vector<std::pair<std::string, HealthRule>> studies = {{"default", HealthRule{}},
                                                             {"lenient", HealthRule{0.7, false}}};
  size_t expected_healthy = 0;
  for (const auto& [name, rule] : studies) {
    StudyRow row;
    row.name = name;
    row.objective = "mfu";
    row.health = rule;
    store.ensure_study(row);
    std::vector<Candidate> cands;
    for (size_t i = 0; i < outcomes.size(); ++i) cands.push_back(candidate(1, 1, static_cast<int>(i) + 1));
    store.add_candidates(name, cands);
    std::set<std::string> healthy;
    for (size_t i = 0; i < outcomes.size(); ++i) {
      const Outcome& o = outcomes[i];
      TrialMetrics m;
      m.mfu = 30;
      m.memory_pct = o.memory_pct;
      m.alloc_retries = o.retries;
      m.oom_errors = o.ooms;
      store.mark_running(name, cands[i].id, 0, "");
      store.finish_trial(name, cands[i].id, o.status, o.failure, "", m, 1.0);
      if (unhealthy_because(o.status, o.failure, m, rule).empty()) healthy.insert(cands[i].id);
    }
    EXPECT_EQ(column_of(path, "SELECT id FROM healthy_trials WHERE study = '" + name + "'"), healthy) << name;
    expected_healthy += healthy.size();
  }
  // Both rules matter: default keeps 50, 75, 90 and unknown memory; lenient
  // keeps 50, the retries and unknown memory (75 is over its 70%).
  EXPECT_EQ(expected_healthy, 7u);
}

}  // namespace
}  // namespace partune
