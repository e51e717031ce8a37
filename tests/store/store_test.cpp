// The study database: schema, the trial lifecycle, resume semantics, and no
// lost or duplicated rows when the writer is killed with SIGKILL.
#include "tuner/store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <functional>

#include "common/error.h"
#include "tests/store/test_support.h"
#include "tuner/store/schema.h"

namespace partune {
namespace {

using testing::candidate;
using testing::TempDir;

// A second, raw connection: what a user's sqlite3 shell sees.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) std::abort();
  }
  ~RawDb() { sqlite3_close(db_); }
  // First column of the first row as text ("" when no row or NULL).
  std::string scalar(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  void exec(const std::string& sql) {
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
  }

 private:
  sqlite3* db_ = nullptr;
};

StudyRow study_row(const std::string& name = "moe") {
  StudyRow s;
  s.name = name;
  s.space_path = "spaces/moe.toml";
  s.space_text = "[study]\nname = \"moe\"\n";
  s.objective = "mfu";
  s.facts = {{"device", "NVIDIA H100"}, {"devices", 8}};
  return s;
}

TrialMetrics metrics(double mfu, double memory_pct = 50.0, int64_t retries = 0) {
  TrialMetrics m;
  m.mfu = mfu;
  m.tps = mfu * 300;
  m.tflops = mfu * 9.89;
  m.memory_gib = memory_pct * 0.8;
  m.memory_pct = memory_pct;
  m.alloc_retries = retries;
  m.counted_steps = 10;
  return m;
}

StepRow step_row(int64_t step, double mfu = 30.0) {
  StepRow r;
  r.step = step;
  r.loss = 10.0 - 0.01 * static_cast<double>(step);
  r.grad_norm = 1.5;
  r.memory_gib = 40.0;
  r.memory_pct = 50.0;
  r.tps = 12345;
  r.tflops = 300.5;
  r.mfu = mfu;
  return r;
}

// A store with study "moe" and the given candidates.
Store open_study(const std::string& path, const std::vector<Candidate>& candidates) {
  Store store = Store::open(path);
  store.ensure_study(study_row());
  store.add_candidates("moe", candidates);
  return store;
}

std::vector<std::string> ids(const std::vector<TrialRecord>& trials) {
  std::vector<std::string> out;
  for (const auto& t : trials) out.push_back(t.id);
  return out;
}

TEST(Store, CreatesSchemaAndRecordsVersion) {
  TempDir dir;
  const std::string path = dir.file("nested/folders/study.db");
  { Store store = Store::open(path); }
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(kStoreSchemaVersion));
  for (const char* table : {"studies", "trials", "steps", "events"})
    EXPECT_EQ(
        raw.scalar(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
        "1")
        << table;
}

// A version-1 database (written before trials kept their start-up cost)
// opens migrated: its rows stay, the new columns read as unknown, and the
// costs of a new attempt are stored and cleared with the attempt.
TEST(Store, MigratesAVersion1DatabaseAndKeepsTrialCosts) {
  TempDir dir;
  const std::string path = dir.file("v1.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, schema::kVersion1, nullptr, nullptr, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA user_version = 1;"
                           "INSERT INTO studies (name, created_at) VALUES ('moe', '2026-01-01T00:00:00Z');"
                           "INSERT INTO trials (study, id, plan_index, status, config_json, axes_json, mfu) "
                           "VALUES ('moe', 'old', 0, 'done', '{}', '{}', 31.5);",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  Store store = Store::open(path);
  EXPECT_EQ(RawDb(path).scalar("PRAGMA user_version"), std::to_string(kStoreSchemaVersion));
  auto old = store.trial("moe", "old");
  ASSERT_TRUE(old);
  EXPECT_DOUBLE_EQ(*old->metrics.mfu, 31.5);
  EXPECT_FALSE(old->startup_s);
  EXPECT_FALSE(old->host_peak_rss_gib);

  store.add_candidates("moe", {candidate(2, 1, 4, "full")});
  const std::string id = store.trials("moe").back().id;
  store.mark_running("moe", id, 0, "");
  store.set_trial_costs("moe", id, 8.25, 2.5);
  EXPECT_DOUBLE_EQ(*store.trial("moe", id)->startup_s, 8.25);
  EXPECT_DOUBLE_EQ(*store.trial("moe", id)->host_peak_rss_gib, 2.5);
  store.set_trial_costs("moe", id, 9.0, std::nullopt);
  EXPECT_FALSE(store.trial("moe", id)->host_peak_rss_gib);
  store.mark_running("moe", id, 0, "");  // a new attempt: its costs are not known yet
  EXPECT_FALSE(store.trial("moe", id)->startup_s);
  EXPECT_THROW(store.set_trial_costs("moe", "nope", 1.0, 1.0), StoreError);
}

TEST(Store, UsesWalMode) {
  TempDir dir;
  const std::string path = dir.file("study.db");
  { Store store = Store::open(path); }
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
}

TEST(Store, ReopeningKeepsEverything) {
  TempDir dir;
  const std::string path = dir.file("study.db");
  { open_study(path, {candidate(1, 1, 2), candidate(2, 1, 2)}); }
  Store store = Store::open(path, Store::Mode::Existing);
  EXPECT_EQ(store.studies(), std::vector<std::string>{"moe"});
  EXPECT_EQ(store.trials("moe").size(), 2u);
  auto study = store.study("moe");
  ASSERT_TRUE(study);
  EXPECT_EQ(study->space_path, "spaces/moe.toml");
  EXPECT_EQ(study->facts["device"], "NVIDIA H100");
  EXPECT_FALSE(study->created_at.empty());
}

TEST(Store, EnsureStudyUpdatesSpaceAndKeepsCreatedAt) {
  TempDir dir;
  Store store = Store::open(dir.file("study.db"));
  StudyRow row = study_row();
  row.created_at = "2020-01-01T00:00:00Z";
  store.ensure_study(row);
  row.space_text = "edited";
  row.created_at = "2030-01-01T00:00:00Z";
  store.ensure_study(row);
  auto got = store.study("moe");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->space_text, "edited");
  EXPECT_EQ(got->created_at, "2020-01-01T00:00:00Z");
  EXPECT_FALSE(store.study("other"));
}

struct BadPathCase {
  std::string name;
  std::function<std::string(const TempDir&)> make;  // returns the db path to open
  Store::Mode mode;
  std::string message;  // a part of the InputError message
};

class StoreBadPath : public ::testing::TestWithParam<BadPathCase> {};

TEST_P(StoreBadPath, ThrowsInputErrorNamingThePath) {
  TempDir dir;
  const std::string path = GetParam().make(dir);
  try {
    Store::open(path, GetParam().mode);
    FAIL() << "no error for " << path;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(GetParam().message), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, StoreBadPath,
    ::testing::Values(BadPathCase{"ParentIsAFile",
                                  [](const TempDir& d) {
                                    std::ofstream(d.file("plain")) << "x";
                                    return d.file("plain/study.db");
                                  },
                                  Store::Mode::Create, "cannot create folder"},
                      BadPathCase{"IsAFolder", [](const TempDir& d) { return d.path().string(); }, Store::Mode::Create,
                                  "is a folder"},
                      BadPathCase{"NotADatabase",
                                  [](const TempDir& d) {
                                    std::ofstream(d.file("junk.db")) << std::string(4096, 'j');
                                    return d.file("junk.db");
                                  },
                                  Store::Mode::Create, "not a database"},
                      BadPathCase{"OtherSqliteDatabase",
                                  [](const TempDir& d) {
                                    sqlite3* db = nullptr;
                                    sqlite3_open(d.file("other.db").c_str(), &db);
                                    sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
                                    sqlite3_close(db);
                                    return d.file("other.db");
                                  },
                                  Store::Mode::Create, "not a partune results database"},
                      BadPathCase{"NewerSchema",
                                  [](const TempDir& d) {
                                    { Store::open(d.file("new.db")); }
                                    sqlite3* db = nullptr;
                                    sqlite3_open(d.file("new.db").c_str(), &db);
                                    sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
                                    sqlite3_close(db);
                                    return d.file("new.db");
                                  },
                                  Store::Mode::Create, "newer than this partune"},
                      BadPathCase{"MissingWhenExistingRequired", [](const TempDir& d) { return d.file("typo.db"); },
                                  Store::Mode::Existing, "no results database here"}),
    [](const auto& info) { return info.param.name; });

TEST(Store, MissingDbIsNotCreatedInExistingMode) {
  TempDir dir;
  EXPECT_THROW(Store::open(dir.file("typo.db"), Store::Mode::Existing), InputError);
  EXPECT_FALSE(std::filesystem::exists(dir.file("typo.db")));
}

TEST(Store, ConfigAndAxesRoundTrip) {
  TempDir dir;
  Candidate c = candidate(2, 4, 8, "full");
  c.config.set("training.dataloader.num_workers", int64_t{2});
  c.config.set("job.description", std::string("quote \" and\nnewline"));
  c.config.set("float8.recipe_name", std::string("rowwise"));  // passthrough section
  Store store = open_study(dir.file("study.db"), {c});
  auto t = store.trial("moe", c.id);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->config, c.config);
  EXPECT_EQ(t->axes, c.axes);
  EXPECT_EQ(t->status, TrialStatus::Pending);
  EXPECT_EQ(t->failure, FailureClass::None);
  EXPECT_EQ(t->attempt, 0);
  EXPECT_EQ(t->source, "tune");
  EXPECT_FALSE(t->pgid);
  EXPECT_FALSE(store.trial("moe", "nope"));
}

TEST(Store, AddCandidatesTwiceNeitherDuplicatesNorResets) {
  TempDir dir;
  const auto a = candidate(1, 1, 2), b = candidate(2, 1, 2), c = candidate(4, 1, 2), d = candidate(8, 1, 2);
  Store store = open_study(dir.file("study.db"), {a, b, c});
  store.mark_running("moe", a.id, 100, "logs/a");
  store.add_step("moe", a.id, step_row(1));
  store.finish_trial("moe", a.id, TrialStatus::Done, FailureClass::None, "", metrics(31.5), 12.5);
  ASSERT_TRUE(store.mark_pruned("moe", b.id, "smaller batch OOMed", a.id));

  store.add_candidates("moe", {d, c, b, a});  // a re-plan: same ids plus one new
  const auto trials = store.trials("moe");
  EXPECT_EQ(ids(trials), (std::vector<std::string>{a.id, b.id, c.id, d.id}));  // plan order kept
  EXPECT_EQ(trials[0].status, TrialStatus::Done);
  EXPECT_EQ(trials[0].metrics.mfu, 31.5);
  EXPECT_EQ(trials[0].attempt, 1);
  EXPECT_EQ(store.steps("moe", a.id).size(), 1u);
  EXPECT_EQ(trials[1].status, TrialStatus::Pruned);
  EXPECT_EQ(trials[2].status, TrialStatus::Pending);
  EXPECT_EQ(trials[3].status, TrialStatus::Pending);
}

TEST(Store, AddCandidatesNeedsTheStudy) {
  TempDir dir;
  Store store = Store::open(dir.file("study.db"));
  try {
    store.add_candidates("ghost", {candidate(1, 1, 1)});
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("study 'ghost'"), std::string::npos) << e.what();
  }
}

TEST(Store, TrialLifecycle) {
  TempDir dir;
  const auto a = candidate(1, 1, 2);
  Store store = open_study(dir.file("study.db"), {a});

  store.mark_running("moe", a.id, 4242, "results/moe/trial-a");
  auto t = store.trial("moe", a.id);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->status, TrialStatus::Running);
  EXPECT_EQ(t->attempt, 1);
  EXPECT_EQ(t->pgid, 4242);
  EXPECT_EQ(t->log_dir, "results/moe/trial-a");
  EXPECT_FALSE(t->started_at.empty());
  EXPECT_TRUE(t->finished_at.empty());

  store.set_pgid("moe", a.id, 4343);
  EXPECT_EQ(store.trial("moe", a.id)->pgid, 4343);
  store.set_facts("moe", a.id, {{"host", "node1"}});
  store.set_facts("moe", a.id, {{"torch", "2.8"}});
  EXPECT_EQ(store.trial("moe", a.id)->facts, (nlohmann::json{{"host", "node1"}, {"torch", "2.8"}}));

  store.add_step("moe", a.id, step_row(1, 20.0));
  store.add_step("moe", a.id, step_row(2, 25.0));
  StepRow partial;  // a line with only some fields
  partial.step = 3;
  partial.loss = 7.5;
  store.add_step("moe", a.id, partial, 0);
  store.add_step("moe", a.id, step_row(2, 26.0));  // logged again: replaces
  auto steps = store.steps("moe", a.id);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[1].mfu, 26.0);
  EXPECT_EQ(steps[2].loss, 7.5);
  EXPECT_FALSE(steps[2].mfu);
  EXPECT_FALSE(steps[2].memory_gib);

  store.finish_trial("moe", a.id, TrialStatus::Failed, FailureClass::Oom, "CUDA out of memory", metrics(0, 99.0), 33.0);
  t = store.trial_with_steps("moe", a.id);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->status, TrialStatus::Failed);
  EXPECT_EQ(t->failure, FailureClass::Oom);
  EXPECT_EQ(t->reason, "CUDA out of memory");
  EXPECT_EQ(t->metrics.memory_pct, 99.0);
  EXPECT_EQ(t->wall_s, 33.0);
  EXPECT_FALSE(t->pgid);
  EXPECT_FALSE(t->finished_at.empty());
  EXPECT_EQ(t->steps.size(), 3u);

  EXPECT_THROW(store.finish_trial("moe", a.id, TrialStatus::Running, FailureClass::None, "", {}, 0),
               std::invalid_argument);
}

TEST(Store, FailureClassIsNullInTheDbWhenNone) {
  TempDir dir;
  const auto a = candidate(1, 1, 2);
  const std::string path = dir.file("study.db");
  {
    Store store = open_study(path, {a});
    store.mark_running("moe", a.id, 1, "");
    store.finish_trial("moe", a.id, TrialStatus::Done, FailureClass::None, "", metrics(30), 1.0);
  }
  RawDb raw(path);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM trials WHERE failure IS NULL AND status = 'done'"), "1");
}

TEST(Store, UnknownTrialIsAStoreErrorNamingIt) {
  TempDir dir;
  Store store = open_study(dir.file("study.db"), {candidate(1, 1, 2)});
  auto expect_names_trial = [](auto&& call) {
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const StoreError& e) {
      EXPECT_NE(std::string(e.what()).find("trial 'ghost'"), std::string::npos) << e.what();
    }
  };
  expect_names_trial([&] { store.mark_running("moe", "ghost", 1, ""); });
  expect_names_trial([&] { store.set_pgid("moe", "ghost", 1); });
  expect_names_trial([&] { store.add_step("moe", "ghost", step_row(1)); });
  expect_names_trial([&] { store.finish_trial("moe", "ghost", TrialStatus::Done, FailureClass::None, "", {}, 1); });
  expect_names_trial([&] { store.reset_to_pending("moe", "ghost", "x"); });
  expect_names_trial([&] { store.steps("moe", "ghost"); });
}

TEST(Store, MarkPrunedOnlyTouchesPendingTrialsAndRecordsWhy) {
  TempDir dir;
  const auto a = candidate(1, 1, 2), b = candidate(1, 1, 4), c = candidate(1, 1, 8);
  Store store = open_study(dir.file("study.db"), {a, b, c});
  store.mark_running("moe", a.id, 1, "");
  store.finish_trial("moe", a.id, TrialStatus::Failed, FailureClass::Oom, "OOM", {}, 5);

  EXPECT_TRUE(store.mark_pruned("moe", b.id, "local_batch_size 4 > 2, which OOMed", a.id));
  EXPECT_FALSE(store.mark_pruned("moe", a.id, "never", b.id));  // finished: untouched
  EXPECT_FALSE(store.mark_pruned("moe", b.id, "twice", a.id));  // already pruned
  EXPECT_FALSE(store.mark_pruned("moe", "ghost", "no such", a.id));

  auto pruned = store.trial("moe", b.id);
  EXPECT_EQ(pruned->status, TrialStatus::Pruned);
  EXPECT_EQ(pruned->pruned_by, a.id);
  EXPECT_EQ(pruned->reason, "local_batch_size 4 > 2, which OOMed");
  EXPECT_EQ(store.trial("moe", a.id)->status, TrialStatus::Failed);
  EXPECT_EQ(store.trial("moe", c.id)->status, TrialStatus::Pending);

  auto events = store.events("moe", b.id);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "prune");
  EXPECT_EQ(events[0].message, "local_batch_size 4 > 2, which OOMed");
  EXPECT_EQ(events[0].data["caused_by"], a.id);
}

TEST(Store, MarkUnprunedReversesAPruneAndRecordsWhy) {
  TempDir dir;
  const auto a = candidate(1, 1, 2), b = candidate(1, 1, 4), c = candidate(1, 1, 8);
  Store store = open_study(dir.file("study.db"), {a, b, c});
  store.mark_running("moe", a.id, 1, "");
  store.finish_trial("moe", a.id, TrialStatus::Done, FailureClass::None, "", metrics(30), 5);
  ASSERT_TRUE(store.mark_pruned("moe", b.id, "predicted 150.0 GiB > 90% of 140.0 GiB", ""));

  EXPECT_FALSE(store.mark_unpruned("moe", a.id, "done: untouched", {}));
  EXPECT_FALSE(store.mark_unpruned("moe", c.id, "pending: untouched", {}));
  EXPECT_FALSE(store.mark_unpruned("moe", "ghost", "no such", {}));
  ASSERT_TRUE(store.mark_unpruned("moe", b.id, "now predicted 60.0 GiB", {{"caused_by", a.id}}));
  EXPECT_FALSE(store.mark_unpruned("moe", b.id, "twice", {}));

  const auto back = store.trial("moe", b.id);
  EXPECT_EQ(back->status, TrialStatus::Pending);
  EXPECT_EQ(back->reason, "");
  EXPECT_EQ(back->pruned_by, "");
  EXPECT_EQ(back->attempt, 0);
  EXPECT_EQ(store.trial("moe", a.id)->status, TrialStatus::Done);
  EXPECT_EQ(store.trial("moe", c.id)->status, TrialStatus::Pending);
  const auto events = store.events("moe", b.id);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, "prune");
  EXPECT_EQ(events[1].kind, "unprune");
  EXPECT_EQ(events[1].message, "now predicted 60.0 GiB");
  EXPECT_EQ(events[1].data["caused_by"], a.id);
  EXPECT_TRUE(store.events("moe", c.id).empty());
  // It can be pruned again.
  EXPECT_TRUE(store.mark_pruned("moe", b.id, "predicted 130.0 GiB > 90% of 140.0 GiB", ""));
}

TEST(Store, EventsWithAndWithoutTrial) {
  TempDir dir;
  const auto a = candidate(1, 1, 2);
  Store store = open_study(dir.file("study.db"), {a});
  store.add_event("moe", std::nullopt, "info", "study started");
  store.add_event("moe", a.id, "alloc_retries", "3 CUDA memory allocation retries.", {{"count", 3}});
  store.add_event("moe", a.id, "warning", "slow step");
  auto all = store.events("moe");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_FALSE(all[0].trial);
  EXPECT_TRUE(all[0].data.is_null());
  EXPECT_FALSE(all[0].time.empty());
  auto of_a = store.events("moe", a.id);
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_EQ(of_a[0].kind, "alloc_retries");
  EXPECT_EQ(of_a[0].data["count"], 3);
  EXPECT_LT(of_a[0].id, of_a[1].id);
}

// A tuner killed mid-trial left it 'running'; the next tune resets and reruns
// it, keeping the first attempt's rows.
TEST(Store, ResumeRunsLeftoversAgainAndKeepsEarlierAttempts) {
  TempDir dir;
  const auto a = candidate(1, 1, 2), b = candidate(2, 1, 2);
  const std::string path = dir.file("study.db");
  {
    Store store = open_study(path, {a, b});
    store.mark_running("moe", a.id, 1, "");
    store.finish_trial("moe", a.id, TrialStatus::Done, FailureClass::None, "", metrics(30), 1);
    store.mark_running("moe", b.id, 777, "logs/b");
    for (int s = 1; s <= 4; ++s) store.add_step("moe", b.id, step_row(s));
  }  // the tuner dies here

  Store store = open_study(path, {a, b});  // same space again
  auto left = store.running_trials("moe");
  ASSERT_EQ(ids(left), std::vector<std::string>{b.id});
  EXPECT_EQ(left[0].pgid, 777);  // so the new tuner can end the old process group
  store.reset_to_pending("moe", b.id, "left running by a stopped tune; run again");
  EXPECT_TRUE(store.running_trials("moe").empty());
  auto reset = store.trial("moe", b.id);
  EXPECT_EQ(reset->status, TrialStatus::Pending);
  EXPECT_FALSE(reset->pgid);
  auto events = store.events("moe", b.id);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "reset");
  EXPECT_EQ(events[0].data["previous_status"], "running");
  EXPECT_EQ(events[0].data["attempt"], 1);

  store.mark_running("moe", b.id, 888, "logs/b");
  EXPECT_EQ(store.trial("moe", b.id)->attempt, 2);
  EXPECT_TRUE(store.steps("moe", b.id).empty());  // the new attempt starts clean
  EXPECT_EQ(store.steps("moe", b.id, 1).size(), 4u);
  store.add_step("moe", b.id, step_row(1));
  EXPECT_EQ(store.steps("moe", b.id).size(), 1u);
  EXPECT_EQ(store.steps("moe", b.id, 1).size(), 4u);
  EXPECT_EQ(store.trial("moe", a.id)->status, TrialStatus::Done);
}

TEST(Store, IngestedRunsAreFinishedTrialsWithSteps) {
  TempDir dir;
  Store store = open_study(dir.file("study.db"), {candidate(1, 1, 2)});
  const Candidate c = candidate(8, 8, 4);
  TrialRecord r;
  r.id = "hand-run";
  r.status = TrialStatus::Done;
  r.axes = c.axes;
  r.config = c.config;
  r.metrics = metrics(29.9);
  r.log_dir = "/logs/hand.log";
  r.facts = {{"note", "flavor 'custom' unknown to tune"}};
  r.steps = {step_row(10), step_row(20)};
  store.insert_ingested("moe", r);

  auto t = store.trial_with_steps("moe", "hand-run");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->source, "ingest");
  EXPECT_EQ(t->status, TrialStatus::Done);
  EXPECT_EQ(t->attempt, 1);
  EXPECT_EQ(t->config, c.config);
  EXPECT_EQ(t->metrics.mfu, 29.9);
  EXPECT_EQ(t->steps.size(), 2u);
  EXPECT_FALSE(t->finished_at.empty());
  EXPECT_EQ(t->facts["note"], "flavor 'custom' unknown to tune");
  EXPECT_EQ(store.trials("moe").back().id, "hand-run");

  try {
    store.insert_ingested("moe", r);
    FAIL() << "ingested twice";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'hand-run' is already in study 'moe'"), std::string::npos) << e.what();
  }
}

TEST(Store, TwoConnectionsShareOneDatabase) {
  TempDir dir;
  const auto a = candidate(1, 1, 2);
  Store first = open_study(dir.file("study.db"), {a});
  Store second = Store::open(dir.file("study.db"));
  first.mark_running("moe", a.id, 1, "");
  for (int s = 1; s <= 20; ++s) (s % 2 ? first : second).add_step("moe", a.id, step_row(s));
  EXPECT_EQ(first.steps("moe", a.id).size(), 20u);
  EXPECT_EQ(second.trial("moe", a.id)->status, TrialStatus::Running);
}

// The writer is killed with SIGKILL while it logs steps: every step it had
// committed is there, once, and the trial is found 'running'.
TEST(Store, KillNineMidTrialLosesAndDuplicatesNothing) {
  TempDir dir;
  const std::string path = dir.file("study.db");
  const auto done = candidate(1, 1, 2), victim = candidate(2, 1, 2);
  {
    Store store = open_study(path, {done, victim});
    store.mark_running("moe", done.id, 1, "");
    for (int s = 1; s <= 5; ++s) store.add_step("moe", done.id, step_row(s));
    store.finish_trial("moe", done.id, TrialStatus::Done, FailureClass::None, "", metrics(33), 2);
  }  // no connection is open across fork()

  testing::Pipe pipe;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pipe.close_read();
    try {
      Store store = Store::open(path);
      store.mark_running("moe", victim.id, static_cast<int>(getpid()), "logs/victim");
      for (int64_t s = 1;; ++s) {
        store.add_step("moe", victim.id, step_row(s));
        if (s % 7 == 0) store.add_event("moe", victim.id, "info", "step " + std::to_string(s));
        if (!pipe.send(s)) _exit(4);  // committed: tell the parent
      }
    } catch (...) {
      _exit(3);
    }
  }
  pipe.close_write();
  int64_t last_committed = 0, s = 0;
  while (last_committed < 40 && pipe.receive(s)) last_committed = s;
  ASSERT_GE(last_committed, 40) << "the child stopped early";
  ASSERT_TRUE(testing::kill9(child));

  Store store = Store::open(path);
  auto running = store.running_trials("moe");
  ASSERT_EQ(ids(running), std::vector<std::string>{victim.id});
  EXPECT_EQ(running[0].attempt, 1);
  EXPECT_EQ(running[0].pgid, child);
  auto steps = store.steps("moe", victim.id);
  ASSERT_GE(static_cast<int64_t>(steps.size()), last_committed);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i].step, static_cast<int64_t>(i + 1));
  EXPECT_EQ(store.steps("moe", done.id).size(), 5u);
  EXPECT_EQ(store.trial("moe", done.id)->status, TrialStatus::Done);
  EXPECT_EQ(store.trials("moe").size(), 2u);
  EXPECT_GE(store.events("moe", victim.id).size(), static_cast<size_t>(last_committed / 7));

  RawDb raw(path);
  EXPECT_EQ(raw.scalar("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.scalar("SELECT count(*) - count(DISTINCT step) FROM steps WHERE trial = '" + victim.id + "'"), "0");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM trials"), "2");

  // And the study resumes: the victim runs again as attempt 2.
  store.reset_to_pending("moe", victim.id, "left running");
  store.mark_running("moe", victim.id, 1, "");
  EXPECT_EQ(store.trial("moe", victim.id)->attempt, 2);
  EXPECT_EQ(store.steps("moe", victim.id, 1).size(), steps.size());
}

}  // namespace
}  // namespace partune
