// `tune why ID` on a real night study: the right reason for one candidate of
// each kind, the candidates chosen from the database (and the plan) by what
// happened to them; and `tune plan --rejected`.
#include <gtest/gtest.h>

#include "night_study.h"

namespace partune::cli_testing {
namespace {

// The first id a query returns, or a test failure.
std::string pick(const Study& s, const std::string& where) {
  const std::string id =
      scalar(s.db, "SELECT id FROM trials WHERE study = 'night' AND " + where + " ORDER BY plan_index LIMIT 1");
  EXPECT_FALSE(id.empty()) << "no trial where " << where;
  return id;
}

// `tune why` on one id: exit 0, and its first line.
std::string why(const TempDir& dir, const Study& s, const std::string& id, std::string* all = nullptr) {
  Result r = tune({"why", id.substr(0, 8), "--space", s.space}, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  if (all) *all = r.out;
  return r.out.substr(0, r.out.find('\n'));
}

TEST(Why, GivesTheRightReasonForOneCandidateOfEachKind) {
  TempDir dir;
  const Study s = run_night_study(dir);
  std::string text;

  // Rejected: a point the planner refused (TP 4 on 2 devices), found through the plan.
  Result rejected = tune({"plan", "--space", s.space, "--rejected", "--format", "json"}, dir.path());
  ASSERT_EQ(rejected.exit_code, 0) << rejected.describe();
  const auto points = json_of(rejected)["rejected_points"];
  ASSERT_EQ(points.size(), 36u);
  const std::string rid = points[0]["id"];
  EXPECT_EQ(points[0]["config"]["parallelism.tensor_parallel_degree"], 4);
  EXPECT_EQ(why(dir, s, rid, &text),
            rid + ": rejected: breaks the planner rule '" + points[0]["rule"].get<std::string>() + "'");
  EXPECT_NE(text.find("does not divide world size 2"), std::string::npos) << text;

  // Pruned by dominance: names the trial and that trial's memory outcome.
  const std::string pid = pick(s, "status = 'pruned' AND pruned_by IS NOT NULL AND pruned_by <> ''");
  const std::string cause = scalar(s.db, "SELECT pruned_by FROM trials WHERE id = '" + pid + "'");
  EXPECT_EQ(why(dir, s, pid, &text).rfind(pid + ": pruned by trial " + cause + ": needs at least the memory of", 0), 0u)
      << text;
  EXPECT_NE(text.find("that trial: failed (oom)"), std::string::npos) << text;
  EXPECT_NE(text.find("this candidate differs on: lbs 2 -> 4"), std::string::npos) << text;

  // Pruned by the memory model: quotes the prediction the study recorded.
  const std::string mid = pick(s, "status = 'pruned' AND (pruned_by IS NULL OR pruned_by = '') AND attempt = 0");
  EXPECT_EQ(why(dir, s, mid, &text).rfind(mid + ": pruned by the memory model before launch: predicted ", 0), 0u)
      << text;
  const double predicted =
      std::stod(scalar(s.db, "SELECT facts_json ->> '$.prediction.memory_gib' FROM trials WHERE id = '" + mid + "'"));
  char gib[32];
  std::snprintf(gib, sizeof gib, "predicted %.2f GiB", predicted);
  EXPECT_NE(text.find(std::string("memory model: ") + gib), std::string::npos) << text;

  // Failed: out of memory, with the line that shows it; and the hang, with the log's last lines.
  const std::string oid = pick(s, "status = 'failed' AND failure = 'oom'");
  EXPECT_EQ(why(dir, s, oid, &text).rfind(oid + ": failed (oom): torch.OutOfMemoryError", 0), 0u) << text;
  EXPECT_NE(text.find("the lines that show it:"), std::string::npos) << text;
  EXPECT_NE(text.find("CUDA out of memory. Tried to allocate"), std::string::npos) << text;
  const std::string hid = pick(s, "status = 'failed' AND failure = 'hang'");
  EXPECT_EQ(why(dir, s, hid, &text), hid + ": failed (hang): no output for 2 s") << text;
  EXPECT_NE(text.find("step:  3"), std::string::npos) << text;

  // Done but not healthy: the rule it broke.
  const std::string uid = pick(s, "status = 'done' AND alloc_retries > 0");
  EXPECT_EQ(why(dir, s, uid, &text).rfind(uid + ": not ranked: done, but ", 0), 0u) << text;
  EXPECT_NE(text.find("allocation retries"), std::string::npos) << text;

  // Ranked: the best says by how much it leads; the third names the two above it.
  const auto best = json_of(tune({"best", "--space", s.space, "--format", "json", "--top", "3"}, dir.path()));
  ASSERT_EQ(best.size(), 3u);
  const std::string first = best[0]["id"], third = best[2]["id"];
  const std::string n = scalar(s.db, "SELECT count(*) FROM healthy_trials WHERE study = 'night'");
  EXPECT_EQ(why(dir, s, first, &text), first + ": ranked 1 of " + n + " healthy trials by mfu") << text;
  EXPECT_NE(text.find("the best: ahead of #2 " + best[1]["id"].get<std::string>() + " by "), std::string::npos) << text;
  EXPECT_EQ(why(dir, s, third, &text), third + ": ranked 3 of " + n + " healthy trials by mfu") << text;
  EXPECT_NE(text.find("#1 " + first), std::string::npos) << text;
  EXPECT_NE(text.find("#2 " + best[1]["id"].get<std::string>()), std::string::npos) << text;
}

TEST(Why, AnUnknownOrAmbiguousIdIsBadInputNamingIt) {
  TempDir dir;
  const Study s = write_night_study(dir);
  // The night's first trial runs out of memory by design, and a run in which
  // every launched trial failed exits 4.
  ASSERT_EQ(tune({"--space", s.space, "--max-trials", "1"}, dir.path(), 60).exit_code, 4);
  Result none = tune({"why", "zzzz", "--space", s.space}, dir.path());
  EXPECT_EQ(none.exit_code, 2) << none.describe();
  EXPECT_NE(none.err.find("study 'night': no candidate with id 'zzzz'"), std::string::npos) << none.err;
  // Without the space the rejected points are unknown, and the message says where to look.
  Result no_space = tune({"why", "zzzz", "--db", s.db}, dir.path());
  EXPECT_EQ(no_space.exit_code, 2) << no_space.describe();
  EXPECT_NE(no_space.err.find("give --space"), std::string::npos) << no_space.err;
  Result ambiguous = tune({"why", "", "--space", s.space}, dir.path());
  EXPECT_EQ(ambiguous.exit_code, 2) << ambiguous.describe();
}

TEST(PlanRejected, ListsEveryRejectedPointWithTheRuleItBroke) {
  TempDir dir;
  const Study s = write_night_study(dir);
  Result table = tune({"plan", "--space", s.space, "--rejected"}, dir.path());
  ASSERT_EQ(table.exit_code, 0) << table.describe();
  EXPECT_NE(table.out.find("rejected points of " + s.space + ": 36 of 108"), std::string::npos) << table.out;
  EXPECT_EQ(count_lines_with(table.out, "does not divide world size 2"), 36u) << table.out;
  // Each listed point's rule agrees with plain `tune plan`'s counts.
  const auto plain = json_of(tune({"plan", "--space", s.space, "--format", "json"}, dir.path()));
  const auto listed = json_of(tune({"plan", "--space", s.space, "--rejected", "--format", "json"}, dir.path()));
  std::map<std::string, int> by_rule;
  for (const auto& p : listed["rejected_points"]) ++by_rule[p["rule"].get<std::string>()];
  for (const auto& [rule, count] : plain["rejected"].items()) EXPECT_EQ(by_rule[rule], count.get<int>()) << rule;
  EXPECT_FALSE(plain.contains("rejected_points"));
}

}  // namespace
}  // namespace partune::cli_testing
