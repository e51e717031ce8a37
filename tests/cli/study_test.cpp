// A small study runs to completion, and what list / show / best print is the
// documented JSON shape; --time-budget and --max-trials stop it where asked.
#include <gtest/gtest.h>

#include <set>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

const std::vector<std::string> kAxisKeys = {"training.local_batch_size", "activation_checkpoint.mode"};
const std::vector<std::string> kMetricKeys = {"mfu", "tps", "tflops", "memory_gib", "memory_pct", "alloc_retries"};

// Every trial object users script against has these keys with these types.
void expect_trial_shape(const nlohmann::json& t) {
  ASSERT_TRUE(t.is_object()) << t.dump();
  EXPECT_TRUE(t.at("id").is_string());
  static const std::set<std::string> kStatuses = {"pending", "running", "done", "failed", "pruned"};
  EXPECT_TRUE(kStatuses.count(t.at("status").get<std::string>())) << t.dump();
  static const std::set<std::string> kFailures = {"oom", "hang", "timeout", "crash", "nccl", "error"};
  const auto& f = t.at("failure");
  EXPECT_TRUE(f.is_null() || (f.is_string() && kFailures.count(f.get<std::string>()))) << t.dump();
  EXPECT_TRUE(t.at("reason").is_string());
  for (const auto& k : kAxisKeys) EXPECT_TRUE(t.at("config").contains(k)) << k << " missing in " << t.dump();
  for (const auto& k : kMetricKeys) EXPECT_TRUE(t.at("metrics").contains(k)) << k << " missing in " << t.dump();
}

TEST(Study, RunsToCompletionAndListsEveryTrialInTheDocumentedShape) {
  TempDir dir;
  Study s = write_space(dir, {});
  Result run = tune({"--space", s.space}, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  EXPECT_NE(run.out.find("4 done, 0 failed, 0 pruned, 0 pending of 4 candidates"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("tuner overhead"), std::string::npos) << run.out;

  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 4u);
  for (const auto& t : list) {
    expect_trial_shape(t);
    EXPECT_EQ(t["status"], "done");
    EXPECT_TRUE(t["failure"].is_null());
    EXPECT_EQ(t["attempt"], 1);
    EXPECT_EQ(t["metrics"]["alloc_retries"], 0);
    EXPECT_GT(t["metrics"]["tps"].get<double>(), 0);
    EXPECT_TRUE(fs::exists(s.trial_dir(t["id"]) / "output.log"));
    EXPECT_TRUE(fs::exists(s.trial_dir(t["id"]) / "config.toml"));
  }
  // The space's objective names the db (--space works as well as --db).
  auto by_space = json_of(tune({"list", "--space", s.space, "--format", "json"}, dir.path()));
  EXPECT_EQ(by_space, list);
}

TEST(Study, ShowGivesTheConfigSummaryAndEveryStepRow) {
  TempDir dir;
  SpaceOptions o;
  o.steps = 5;
  o.warmup_steps = 1;
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"--space", s.space}, dir.path()).exit_code, 0);
  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_FALSE(list.empty());
  const std::string id = list[0]["id"];

  // A unique prefix is enough.
  auto t = json_of(tune({"show", "--db", s.db, id.substr(0, 6), "--format", "json"}, dir.path()));
  expect_trial_shape(t);
  EXPECT_EQ(t["id"], id);
  ASSERT_EQ(t["steps"].size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(t["steps"][i]["step"], i + 1);
  EXPECT_EQ(t["metrics"]["counted_steps"], 4);
  EXPECT_EQ(t["job_config"]["model.flavor"], "debugmodel_moe");
  EXPECT_EQ(t["job_config"]["training.local_batch_size"], t["config"]["training.local_batch_size"]);

  Result table = tune({"show", "--db", s.db, id}, dir.path());
  ASSERT_EQ(table.exit_code, 0) << table.describe();
  EXPECT_NE(table.out.find(id), std::string::npos) << table.out;
}

TEST(Study, BestRanksHealthyTrialsByTheObjectiveAndAllAddsTheFlaggedOnes) {
  TempDir dir;
  SpaceOptions o;
  // fake_trainer: 8 GiB + lbs * seq_len * (1e-3 none | 0.15e-3 full) GiB with
  // seq_len 2048. Of 10 GiB: lbs 1 full 83% (healthy), lbs 1 none 100.5%
  // (OOM), lbs 2 full 86%: over an 85% headroom, no retries below 90%.
  o.fake_memory_gib = 10;
  o.prune = "memory_headroom = 0.85\nbefore_launch = false\n";  // this test is about measured health
  o.base = "[base.training]\nseq_len = 2048\n";
  o.axes = "\"training.local_batch_size\" = [1, 2]\n\"activation_checkpoint.mode\" = [\"full\", \"none\"]\n";
  Study s = write_space(dir, o);
  ASSERT_EQ(tune({"--space", s.space}, dir.path()).exit_code, 0);

  auto all_trials = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  size_t done = 0, healthy = 0;
  for (const auto& [id, t] : all_trials) {
    done += t["status"] == "done";
    healthy += t["healthy"] == true;
  }
  ASSERT_EQ(done, 2u);
  ASSERT_EQ(healthy, 1u);

  for (const std::string objective : {"tps", "mfu", "tflops"}) {
    auto best = json_of(tune({"best", "--db", s.db, "--objective", objective, "--format", "json"}, dir.path()));
    ASSERT_EQ(best.size(), 1u) << best.dump();
    expect_trial_shape(best[0]);
    EXPECT_EQ(best[0]["healthy"], true);
    EXPECT_EQ(best[0]["config"]["activation_checkpoint.mode"], "full");
    EXPECT_EQ(best[0]["config"]["training.local_batch_size"], 1);

    auto all = json_of(tune({"best", "--db", s.db, "--all", "--objective", objective, "--format", "json"}, dir.path()));
    ASSERT_EQ(all.size(), done) << all.dump();
    for (size_t i = 0; i < all.size(); ++i) {
      expect_trial_shape(all[i]);
      EXPECT_EQ(all[i]["status"], "done");
      if (i > 0) {
        EXPECT_GE(all[i - 1]["metrics"][objective].get<double>(), all[i]["metrics"][objective].get<double>());
      }
    }
    std::set<bool> flags;
    for (const auto& t : all) flags.insert(t["healthy"].get<bool>());
    EXPECT_EQ(flags, (std::set<bool>{true, false})) << all.dump();
  }

  // --top limits; the table form flags health under --all.
  auto top = json_of(tune({"best", "--db", s.db, "--all", "--top", "1", "--format", "json"}, dir.path()));
  EXPECT_EQ(top.size(), 1u);
  Result table = tune({"best", "--db", s.db, "--all"}, dir.path());
  ASSERT_EQ(table.exit_code, 0) << table.describe();
  EXPECT_NE(table.out.find("healthy"), std::string::npos) << table.out;
}

// A budget of 0 is refused, as the space file refuses it (one range for a
// value wherever it comes from); a short one ends the study, which the same
// command resumes.
TEST(Study, ATimeBudgetEndsTheStudyAndSaysHowToResume) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--step-ms", "300"};  // about 2 s a trial: the budget ends the study after the first
  Study s = write_space(dir, o);
  Result zero = tune({"--space", s.space, "--time-budget", "0"}, dir.path());
  EXPECT_EQ(zero.exit_code, 2) << zero.describe();
  EXPECT_NE(zero.err.find("--time-budget: must be more than 0 s, got 0"), std::string::npos) << zero.err;
  EXPECT_FALSE(fs::exists(s.db));

  Result r = tune({"--space", s.space, "--time-budget", "1s"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("run the same command again to resume"), std::string::npos) << r.out;
  auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 4u);
  int pending = 0;
  for (const auto& t : list) pending += t["status"] == "pending";
  EXPECT_GE(pending, 3) << list.dump();
  // Resuming as told finishes it.
  Result resumed = tune({"--space", s.space}, dir.path(), 60);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_NE(resumed.out.find("4 done"), std::string::npos) << resumed.out;
}

TEST(Study, MaxTrialsRunsThatManyTrialsOfTheStudy) {
  TempDir dir;
  Study s = write_space(dir, {});
  Result r = tune({"run", "--space", s.space, "--max-trials", "3"}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("ran 3 trials"), std::string::npos) << r.out;
  EXPECT_EQ(count_lines_with(r.out, ": started"), 3u) << r.out;
  auto list = trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
  size_t done = 0, pending = 0;
  for (const auto& [id, t] : list) {
    done += t["status"] == "done";
    pending += t["status"] == "pending";
    EXPECT_EQ(fs::exists(s.trial_dir(id)), t["status"] == "done") << id;
  }
  EXPECT_EQ(done, 3u);
  EXPECT_EQ(pending, 1u);
}

// tune plan: each candidate's memory prediction and the study's expected
// cost; fits are judged once the device's memory is known.
TEST(Study, PlanPredictsMemoryAndEstimatesTheStudy) {
  TempDir dir;
  SpaceOptions o;
  Study s = write_space(dir, o);
  auto plan = json_of(tune({"plan", "--space", s.space, "--format", "json"}, dir.path()));
  ASSERT_EQ(plan["candidates"].size(), 4u) << plan.dump();
  double lbs1 = 0, lbs2 = 0;
  for (const auto& c : plan["candidates"]) {
    ASSERT_TRUE(c["predicted"]["memory_gib"].is_number()) << c.dump();
    EXPECT_TRUE(c["predicted"]["fits"].is_null()) << "no [hardware] memory_gib: fits unknown before a trial";
    if (c["config"]["activation_checkpoint.mode"] == "none")
      (c["config"]["training.local_batch_size"] == 1 ? lbs1 : lbs2) = c["predicted"]["memory_gib"].get<double>();
  }
  EXPECT_GT(lbs2, lbs1);                     // a larger batch needs more memory
  EXPECT_EQ(plan["estimate"]["trials"], 4);  // grid: every candidate that fits, once
  EXPECT_GT(plan["estimate"]["seconds"].get<double>(), 0);

  // With the device's memory stated, a 0.1 GiB device fits nothing.
  std::string text = read_file(s.space);
  text.replace(text.find("devices = 1"), 11, "devices = 1\nmemory_gib = 0.1");
  write_file(s.space, text);
  plan = json_of(tune({"plan", "--space", s.space, "--format", "json"}, dir.path()));
  for (const auto& c : plan["candidates"]) EXPECT_EQ(c["predicted"]["fits"], false) << c.dump();
  EXPECT_EQ(plan["estimate"]["trials"], 0);
  Result table = tune({"plan", "--space", s.space}, dir.path());
  EXPECT_NE(table.out.find("memory: 0 of 4 candidates predicted to fit under 90% of 0.1 GiB"), std::string::npos)
      << table.out;
}

}  // namespace
}  // namespace partune::cli_testing
