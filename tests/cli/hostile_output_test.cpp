// What a trial prints must never poison the study: impossible step values
// fail the trial (never a healthy or best result), a step number past int64
// is an error, a trainer printing a million step lines grows neither the
// database nor tune's memory nor output.log without bound, and step lines
// printed by non-zero ranks only are still stored.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

struct Case {
  const char* name;
  std::string objective;
  std::vector<std::string> trainer_args;
  const char* reason;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class HostileStepValues : public ::testing::TestWithParam<Case> {};

TEST_P(HostileStepValues, FailTheTrialAsErrorNamingTheLineAndNeverRank) {
  const Case& c = GetParam();
  TempDir dir;
  SpaceOptions o;
  o.objective = c.objective;
  o.trainer_args = c.trainer_args;
  o.axes = "\"training.local_batch_size\" = [1, 2]\n";
  Study s = write_space(dir, o);
  // Exit code: whatever a study of failed trials exits with; the trials say.
  Result run = tune({"--space", s.space}, dir.path());
  EXPECT_NE(run.exit_code, 2) << run.describe();
  EXPECT_NE(run.out.find("0 done, 2 failed"), std::string::npos) << run.describe();

  for (const auto& t : json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path()))) {
    EXPECT_EQ(t["status"], "failed") << t.dump();
    EXPECT_EQ(t["failure"], "error") << t.dump();
    const std::string reason = t.value("reason", "");
    EXPECT_NE(reason.find("output line "), std::string::npos) << reason;
    EXPECT_NE(reason.find(c.reason), std::string::npos) << reason;
  }
  // Nothing is ranked, and no impossible number was stored as a step row.
  Result best = tune({"best", "--db", s.db, "--format", "json"}, dir.path());
  EXPECT_EQ(best.out.find("\"id\""), std::string::npos) << best.describe();
  EXPECT_EQ(query(s.db, "SELECT count(*) FROM steps WHERE step = 3")[0][0], "0");
  EXPECT_EQ(query(s.db, "SELECT count(*) FROM trials WHERE mfu IS NOT NULL OR tps IS NOT NULL")[0][0], "0");
}

INSTANTIATE_TEST_SUITE_P(
    Cli, HostileStepValues,
    ::testing::Values(Case{"NegativeMfu", "mfu", {"--field", "mfu=-50.00"}, "mfu -50 is negative"},
                      Case{"NanTps", "tps", {"--field", "tps=nan"}, "tps nan is not a number"},
                      Case{"InfiniteTflops", "tflops", {"--field", "tflops=inf"}, "tflops inf is infinite"},
                      Case{"AbsurdMemory", "tps", {"--field", "memory=1e12GiB(5.00%)"}, "memory 1e+12 is over"},
                      Case{"StepOverflow", "tps", {"--field", "step=18446744073709551621"}, "overflows"},
                      Case{"HexMfu", "mfu", {"--field", "mfu=0x1p4"}, "mfu '0x1p4%' is not a decimal number"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(OutputVolume, AMillionStepLinesAreBoundedInTheDbTheLogAndTunesMemory) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--flood", "1000000"};
  o.axes = "\"training.local_batch_size\" = [1]\n";
  o.timeout_s = 200;
  Study s = write_space(dir, o);
  // In a sanitizer build, ASan's quarantine of freed blocks (256 MB by
  // default) would be most of tune's peak: keep it small, so the peak is
  // what tune holds.
  const char* asan = std::getenv("ASAN_OPTIONS");
  ::setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":quarantine_size_mb=4").c_str(), 1);
  Result run = tune({"--space", s.space}, dir.path(), 240);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // tune is the largest child this test reaped: its peak resident memory.
  rusage usage{};
  ASSERT_EQ(::getrusage(RUSAGE_CHILDREN, &usage), 0);
  EXPECT_LT(usage.ru_maxrss, 200 * 1024) << "KiB";  // the output is ~95 MB

  const auto id = query(s.db, "SELECT id FROM trials")[0][0];
  EXPECT_EQ(query(s.db, "SELECT count(*), max(step) FROM steps")[0], (std::vector<std::string>{"10000", "10000"}));
  EXPECT_EQ(query(s.db, "SELECT count(*) FROM events WHERE kind = 'steps_capped'")[0][0], "1");
  const auto log = s.trial_dir(id) / "output.log";
  EXPECT_LE(fs::file_size(log), (uintmax_t{64} << 20) + 200);
  EXPECT_GE(fs::file_size(log), (uintmax_t{64} << 20) - 200);
  const std::string text = read_file(log.string());
  EXPECT_EQ(count_lines_with(text, "partune: output truncated here: this log reached its cap of 67108864 bytes"), 1u);
  // The note is the last line: nothing is written after it.
  EXPECT_EQ(text.substr(text.rfind('\n', text.size() - 2) + 1),
            "partune: output truncated here: this log reached its cap of 67108864 bytes\n");
}

// A trainer flooding short lines is ended at timeout_s, whatever it writes:
// 1 GB of newlines (faster than tune handles lines; before, tune ran on
// until the trainer stopped, and recorded the trial as done), or 10^6 lines
// a second without end. Within timeout_s + 2 s, with tune's own peak memory
// under 200 MB.
TEST(OutputFlood, TheTimeLimitHoldsAndTunesMemoryStaysBounded) {
  const char* asan = std::getenv("ASAN_OPTIONS");
  ::setenv("ASAN_OPTIONS", (std::string(asan ? asan : "") + ":quarantine_size_mb=4").c_str(), 1);
  for (const auto& flood :
       std::vector<std::vector<std::string>>{{"--newline-flood", "1000000000"}, {"--paced-lines", "1000000"}}) {
    TempDir dir;
    SpaceOptions o;
    o.trainer_args = flood;
    o.axes = "\"training.local_batch_size\" = [1]\n";
    o.timeout_s = 2;
    o.hang_timeout_s = 30;
    Study s = write_space(dir, o);
    // tune's own limit: far past what the trial may take, so that a
    // regression fails here rather than waiting for the whole flood.
    Result run = tune({"--space", s.space, "--plain"}, dir.path(), 30);
    EXPECT_EQ(run.exit_code, 4) << flood[0] << ": " << run.describe();  // its only trial failed
    const auto rows = query(s.db, "SELECT status, failure, wall_s FROM trials");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0][0], "failed") << flood[0];
    EXPECT_EQ(rows[0][1], "timeout") << flood[0];
    EXPECT_LT(std::stod(rows[0][2]), o.timeout_s + 2) << flood[0];
    EXPECT_LT(run.max_rss_kib, 200 * 1024) << flood[0] << " (KiB)";
  }
}

TEST(RankPrefix, StepLinesOfNonZeroRanksOnlyAreStored) {
  TempDir dir;
  SpaceOptions o;
  o.trainer_args = {"--rank-prefix", "--rank", "3"};
  o.axes = "\"training.local_batch_size\" = [1]\n";
  Study s = write_space(dir, o);
  Result run = tune({"--space", s.space}, dir.path());
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  EXPECT_NE(run.out.find("1 done, 0 failed"), std::string::npos) << run.out;
  EXPECT_EQ(query(s.db, "SELECT count(*), min(rank), max(rank) FROM steps")[0],
            (std::vector<std::string>{"6", "3", "3"}));
  EXPECT_NE(run.out.find("step 6/6"), std::string::npos) << run.out;  // and shown as they came
}

}  // namespace
}  // namespace partune::cli_testing
