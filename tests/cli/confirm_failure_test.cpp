// [confirm] checks that fail say why: a production program that cannot start
// is named with its cause in the progress line and in the stored reason;
// with no best left, a sentence says so; `tune best`, `tune best --all`,
// `tune export --best` and the report agree that the trials are ruled out.
#include <gtest/gtest.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

TEST(ConfirmFailure, AProductionProgramThatCannotStartIsExplainedEverywhere) {
  TempDir dir;
  SpaceOptions o;
  o.objective = "mfu";
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  Study s = write_space(dir, o);
  write_file(s.space, read_file(s.space) +
                          "\n[confirm]\nkind = \"command\"\nargv = [\"/nonexistent/torchrun\", \"{config_file}\"]\n"
                          "top_k = 2\n");
  Result r = tune({"--space", s.space, "--plain"}, dir.path(), 60);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(count_lines_with(r.out, "production check of "), 2u) << r.out;
  // The progress line names the program and why it did not start.
  EXPECT_EQ(count_lines_with(r.out, "failure error (cannot "), 2u) << r.out;
  EXPECT_GE(count_lines_with(r.out, "/nonexistent/torchrun"), 2u) << r.out;
  EXPECT_EQ(r.out.find("(exit code 127)"), std::string::npos) << r.out;
  // No best, and a sentence why.
  EXPECT_EQ(r.out.find("best so far:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no best: every healthy trial failed its production check ([confirm])"), std::string::npos)
      << r.out;

  const auto list = json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()));
  ASSERT_EQ(list.size(), 2u);
  for (const auto& t : list) {
    const auto facts = nlohmann::json::parse(
        query(s.db, "SELECT facts_json FROM trials WHERE id = '" + t["id"].get<std::string>() + "'")[0][0]);
    const std::string reason = facts.at("production").at("reason");
    EXPECT_NE(reason.find("/nonexistent/torchrun"), std::string::npos) << reason;
    EXPECT_NE(reason.find("cannot"), std::string::npos) << reason;
    EXPECT_EQ(t["status"], "done") << t.dump();
  }

  // best: nothing, and why; best --all: both, not healthy (not one to train
  // on), with the cause.
  Result best = tune({"best", "--db", s.db}, dir.path());
  EXPECT_EQ(best.exit_code, 0) << best.describe();
  EXPECT_NE(best.err.find("failed its production check"), std::string::npos) << best.err;
  Result all = tune({"best", "--db", s.db, "--all"}, dir.path());
  ASSERT_EQ(all.exit_code, 0) << all.describe();
  EXPECT_EQ(all.out.find(" yes "), std::string::npos) << all.out;
  EXPECT_EQ(count_lines_with(all.out, "/nonexistent/torchrun"), 2u) << all.out;
  Result exported = tune({"export", "--best", "--db", s.db}, dir.path());
  EXPECT_EQ(exported.exit_code, 2) << exported.describe();
  EXPECT_NE(exported.err.find("production check"), std::string::npos) << exported.err;

  // The report lists them among what is missing.
  Result report = tune({"report", "--db", s.db, "--output", dir.file("r.html")}, dir.path());
  ASSERT_EQ(report.exit_code, 0) << report.describe();
  const std::string html = read_file(dir.file("r.html"));
  EXPECT_EQ(html.find("Nothing was pruned, failed or rejected"), std::string::npos);
  EXPECT_NE(html.find("production check ([confirm]) failed"), std::string::npos);
}

}  // namespace
}  // namespace partune::cli_testing
