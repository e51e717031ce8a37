// Running a study again reports the study's state, not just this run's: a
// study whose every trial failed exits 4 again when run again (nothing left
// to launch), as its first run did.
#include <gtest/gtest.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

TEST(Rerun, AStudyWhoseEveryTrialFailedExitsFourWhenRunAgain) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--crash-after", "1"};
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  Study s = write_space(dir, o);
  Result first = tune({"--space", s.space}, dir.path());
  ASSERT_EQ(first.exit_code, 4) << first.describe();
  Result again = tune({"--space", s.space}, dir.path());
  EXPECT_EQ(again.exit_code, 4) << again.describe();
  EXPECT_EQ(count_lines_with(again.out, ": started"), 0u) << again.out;
  EXPECT_NE(again.err.find("every trial failed"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace partune::cli_testing
