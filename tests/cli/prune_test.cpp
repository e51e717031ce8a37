// Pruning as a user sees it: a trial that runs out of memory, goes over the
// memory headroom or shows allocation retries prunes the pending candidates
// that are identical except for a larger local batch, a longer sequence or a
// lighter activation checkpointing; they are listed as pruned with a reason
// naming that trial, and never launched.
#include <gtest/gtest.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

using Trials = std::map<std::string, nlohmann::json>;

// fake_trainer's memory: 8 GiB + lbs * seq_len * {1e-3 none, 0.5e-3
// selective, 0.15e-3 full} GiB; over its budget it dies of a CUDA OOM, over
// 90% of it it prints allocation retries.

// The trial whose axes are `axes`, or a test failure.
const nlohmann::json& find(const Trials& trials, const nlohmann::json& axes) {
  for (const auto& [id, t] : trials) {
    bool match = true;
    for (const auto& [k, v] : axes.items()) match = match && t["config"][k] == v;
    if (match) return t;
  }
  static const nlohmann::json none;
  ADD_FAILURE() << "no trial with " << axes.dump();
  return none;
}

Trials run_and_list(const TempDir& dir, const Study& s) {
  Result run = tune({"--space", s.space}, dir.path());
  EXPECT_EQ(run.exit_code, 0) << run.describe();
  return trials_by_id(json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())));
}

// A pruned trial names its cause, in `reason` and `pruned_by`, and was never launched.
void expect_pruned_by(const Study& s, const nlohmann::json& t, const nlohmann::json& cause, const std::string& why) {
  const std::string id = t.value("id", "");
  EXPECT_EQ(t["status"], "pruned") << t.dump();
  EXPECT_EQ(t["pruned_by"], cause["id"]) << t.dump();
  const std::string reason = t.value("reason", "");
  EXPECT_NE(reason.find(cause.value("id", "?")), std::string::npos) << reason;
  EXPECT_NE(reason.find(why), std::string::npos) << reason;
  EXPECT_EQ(t["attempt"], 0) << t.dump();
  EXPECT_TRUE(t["started_at"].is_null()) << t.dump();
  EXPECT_FALSE(fs::exists(s.trial_dir(id))) << id << " was launched";
}

void expect_launched(const nlohmann::json& t, const std::string& status) {
  EXPECT_EQ(t["status"], status) << t.dump();
  EXPECT_EQ(t["attempt"], 1) << t.dump();
}

TEST(Prune, AnOomPrunesLargerBatchesAndSequencesAndRetriesPruneTheirOwn) {
  TempDir dir;
  SpaceOptions o;
  o.prune = "before_launch = false\n";  // the pruning by measured trials, alone
  o.fake_memory_gib = 9.5;
  o.base = "[base.activation_checkpoint]\nmode = \"none\"\n";
  // Grid order: (2,1024) OOMs (10.05 GiB); (1,1024) fits with retries (9.02 GiB).
  o.axes = "\"training.local_batch_size\" = [2, 1, 4]\n\"training.seq_len\" = [1024, 2048]\n";
  Study s = write_space(dir, o);
  Trials trials = run_and_list(dir, s);
  ASSERT_EQ(trials.size(), 6u);

  const auto& oom = find(trials, {{"training.local_batch_size", 2}, {"training.seq_len", 1024}});
  expect_launched(oom, "failed");
  EXPECT_EQ(oom["failure"], "oom");
  for (const auto& [lbs, seq] : {std::pair{2, 2048}, {4, 1024}, {4, 2048}})
    expect_pruned_by(s, find(trials, {{"training.local_batch_size", lbs}, {"training.seq_len", seq}}), oom,
                     "out of memory");

  const auto& retries = find(trials, {{"training.local_batch_size", 1}, {"training.seq_len", 1024}});
  expect_launched(retries, "done");
  EXPECT_GT(retries["metrics"]["alloc_retries"].get<int>(), 0);
  EXPECT_EQ(retries["healthy"], false);
  expect_pruned_by(s, find(trials, {{"training.local_batch_size", 1}, {"training.seq_len", 2048}}), retries,
                   "allocation retries");

  // The table shows the same, and best has no healthy trial to rank.
  Result table = tune({"list", "--db", s.db}, dir.path());
  EXPECT_EQ(count_lines_with(table.out, "pruned"), 4u) << table.out;
  EXPECT_EQ(count_lines_with(table.out, "(by " + oom.value("id", "?") + ")"), 3u) << table.out;
  auto best = json_of(tune({"best", "--db", s.db, "--format", "json"}, dir.path()));
  EXPECT_TRUE(best.empty()) << best.dump();
}

TEST(Prune, OverTheHeadroomPrunesLighterCheckpointingOnly) {
  TempDir dir;
  SpaceOptions o;
  o.prune = "before_launch = false\n";  // the pruning by measured trials, alone
  o.fake_memory_gib = 10;
  o.prune = "memory_headroom = 0.84\nbefore_launch = false\n";
  o.base = "[base.training]\nseq_len = 1024\nlocal_batch_size = 1\n";
  // selective: 8.51 GiB = 85.1% (over 84%, under the 90% where retries start);
  // full: 81.5%; none: lighter than selective, so pruned by it.
  o.axes = "\"activation_checkpoint.mode\" = [\"selective\", \"full\", \"none\"]\n";
  Study s = write_space(dir, o);
  Trials trials = run_and_list(dir, s);
  ASSERT_EQ(trials.size(), 3u);

  const auto& over = find(trials, {{"activation_checkpoint.mode", "selective"}});
  expect_launched(over, "done");
  EXPECT_EQ(over["metrics"]["alloc_retries"], 0);
  EXPECT_EQ(over["healthy"], false);
  expect_launched(find(trials, {{"activation_checkpoint.mode", "full"}}), "done");
  expect_pruned_by(s, find(trials, {{"activation_checkpoint.mode", "none"}}), over, "over the 84% headroom");

  auto best = json_of(tune({"best", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0]["config"]["activation_checkpoint.mode"], "full");
}

TEST(Prune, OnlyCandidatesIdenticalButForMemoryAxesArePruned) {
  TempDir dir;
  SpaceOptions o;
  o.prune = "before_launch = false\n";  // the pruning by measured trials, alone
  o.fake_memory_gib = 9.5;
  o.base = "[base.activation_checkpoint]\nmode = \"none\"\n[base.training]\nseq_len = 1024\n";
  // Each learning rate's lbs 2 OOMs and prunes that learning rate's lbs 4 only.
  o.axes = "\"optimizer.lr\" = [0.001, 0.002]\n\"training.local_batch_size\" = [2, 1, 4]\n";
  Study s = write_space(dir, o);
  Trials trials = run_and_list(dir, s);
  ASSERT_EQ(trials.size(), 6u);
  for (double lr : {0.001, 0.002}) {
    const auto& oom = find(trials, {{"optimizer.lr", lr}, {"training.local_batch_size", 2}});
    EXPECT_EQ(oom["failure"], "oom");
    expect_launched(find(trials, {{"optimizer.lr", lr}, {"training.local_batch_size", 1}}), "done");
    expect_pruned_by(s, find(trials, {{"optimizer.lr", lr}, {"training.local_batch_size", 4}}), oom, "out of memory");
  }
  // The prune decisions are events in the db too, naming their cause.
  auto rows = query(s.db, "SELECT trial, data_json FROM events WHERE kind = 'prune' ORDER BY trial");
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& row : rows)
    EXPECT_EQ(nlohmann::json::parse(row[1])["caused_by"], trials[row[0]]["pruned_by"]) << row[1];
}

}  // namespace
}  // namespace partune::cli_testing
