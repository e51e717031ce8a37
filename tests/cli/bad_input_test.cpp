// Bad input: exit code 2, a message naming the file, line and key (or the
// flag), and nothing launched or created.
#include <gtest/gtest.h>

#include "cli_testing.h"

namespace partune::cli_testing {
namespace {

struct BadSpace {
  const char* name;
  void (*edit)(SpaceOptions&);
  const char* bad_line;  // text on the offending line
  const char* key;       // as the message names it
  const char* reason;
};

// Test names in ctest, not bytes.
void PrintTo(const BadSpace& c, std::ostream* os) { *os << c.name; }

class BadSpaceFile : public ::testing::TestWithParam<BadSpace> {};

TEST_P(BadSpaceFile, ExitsTwoNamingFileLineAndKeyAndRunsNothing) {
  const BadSpace& c = GetParam();
  TempDir dir;
  SpaceOptions o;
  c.edit(o);
  Study s = write_space(dir, o);
  const std::string where = s.space + ":" + std::to_string(line_of(s.space, c.bad_line)) + ":";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--space", s.space}, {"run", "--space", s.space}, {"plan", "--space", s.space}}) {
    Result r = tune(args, dir.path());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find(where), std::string::npos) << "expected " << where << "\n" << r.describe();
    EXPECT_NE(r.err.find(std::string("'") + c.key + "'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_FALSE(fs::exists(s.db));
  EXPECT_FALSE(fs::exists(s.results));
}

INSTANTIATE_TEST_SUITE_P(
    Cli, BadSpaceFile,
    ::testing::Values(
        BadSpace{"UnknownKey", [](SpaceOptions& o) { o.prune = "memory_headroom = 0.9\nheadroom = 0.8\n"; },
                 "headroom = 0.8", "prune.headroom", "unknown key"},
        BadSpace{"EmptyAxis", [](SpaceOptions& o) { o.axes = "\"training.seq_len\" = []\n"; }, "seq_len\" = []",
                 "space.training.seq_len", "empty"},
        BadSpace{"AxisNotAJobConfigKey", [](SpaceOptions& o) { o.axes = "\"training.seqlen\" = [1, 2]\n"; }, "seqlen",
                 "space.training.seqlen", "not a job-config key"},
        BadSpace{"WrongTypeInBase", [](SpaceOptions& o) { o.base = "[base.training]\nseq_len = \"long\"\n"; },
                 "seq_len = \"long\"", "training.seq_len", "expected an integer"},
        // Non-finite numbers: TOML has nan and inf; JSON would store null.
        BadSpace{"NanInBase", [](SpaceOptions& o) { o.base = "[base.optimizer]\nlr = nan\n"; }, "lr = nan",
                 "optimizer.lr", "must be a finite number, got nan"},
        BadSpace{"InfInAxis", [](SpaceOptions& o) { o.axes = "\"optimizer.lr\" = [0.1, -inf]\n"; }, "-inf]",
                 "optimizer.lr", "must be a finite number, got -inf"},
        // Out-of-range job values, each naming its key.
        BadSpace{"ZeroSeqLenInAxis", [](SpaceOptions& o) { o.axes = "\"training.seq_len\" = [128, 0]\n"; },
                 "seq_len\" = [128, 0]", "space.training.seq_len", "must be in [1, 2147483647], got 0"},
        BadSpace{"ZeroStepsInBase", [](SpaceOptions& o) { o.base = "[base.training]\nsteps = 0\n"; }, "steps = 0",
                 "training.steps", "must be in [1, 2147483647], got 0"},
        BadSpace{"NegativeLogFreq", [](SpaceOptions& o) { o.base = "[base.metrics]\nlog_freq = -1\n"; },
                 "log_freq = -1", "metrics.log_freq", "must be in [1,"},
        BadSpace{"NegativeLr", [](SpaceOptions& o) { o.base = "[base.optimizer]\nlr = -0.001\n"; }, "lr = -0.001",
                 "optimizer.lr", "must be >= 0"},
        BadSpace{"ZeroInitTimeout", [](SpaceOptions& o) { o.base = "[base.comm]\ninit_timeout_seconds = 0\n"; },
                 "init_timeout_seconds = 0", "comm.init_timeout_seconds", "must be in [1,"},
        BadSpace{"AbsurdDepth",
                 [](SpaceOptions& o) { o.axes = "\"model.flavor\" = [\"debugmodel_moe-L99999999999999999999\"]\n"; },
                 "-L9999", "space.model.flavor", "'-L<n>' reduces the depth of 'debugmodel_moe'"},
        BadSpace{"StudyNameLongerThanFilesAllow", [](SpaceOptions& o) { o.name = std::string(150, 'n'); },
                 "name = \"nnn", "study.name", "at most 100"},
        BadSpace{"NulInAJobConfigString",
                 [](SpaceOptions& o) { o.base = "[base.job]\ndump_folder = \"out\\u0000/x\"\n"; }, "dump_folder",
                 "job.dump_folder", "NUL byte"},
        // Numbers: one parser and one range for a value wherever it comes
        // from (the command line's are in BadFlags below).
        BadSpace{"HexTimeBudget", [](SpaceOptions& o) { o.search += "time_budget = \"0x10\"\n"; },
                 "time_budget = \"0x10\"", "search.time_budget", "expected a duration such as"},
        BadSpace{"ExponentTimeBudget", [](SpaceOptions& o) { o.search += "time_budget = \"1e308h\"\n"; },
                 "time_budget = \"1e308h\"", "search.time_budget", "expected a duration such as"},
        BadSpace{"HugeTimeBudget", [](SpaceOptions& o) { o.search += "time_budget = 1e308\n"; }, "time_budget = 1e308",
                 "search.time_budget", "must be at most 3.16224e+07 s (366 days)"},
        BadSpace{"ZeroTimeBudget", [](SpaceOptions& o) { o.search += "time_budget = \"0h\"\n"; },
                 "time_budget = \"0h\"", "search.time_budget", "must be more than 0 s, got 0"},
        BadSpace{"ZeroMaxTrials", [](SpaceOptions& o) { o.search += "max_trials = 0\n"; }, "max_trials = 0",
                 "search.max_trials", "must be >= 1, got 0"},
        BadSpace{"HugeTimeout", [](SpaceOptions& o) { o.timeout_s = 1e308; }, "timeout_s = 1e+308", "trial.timeout_s",
                 "must be at most"},
        // Slurm's values.
        BadSpace{"HugeSlurmTimeLimit", [](SpaceOptions& o) { o.launcher = "kind = \"slurm\"\ntime_limit = 1e308\n"; },
                 "time_limit = 1e308", "launcher.time_limit", "must be at most"},
        BadSpace{"NulInSlurmExtraArgs",
                 [](SpaceOptions& o) { o.launcher = "kind = \"slurm\"\nextra_args = [\"--qos=hi\\u0000gh\"]\n"; },
                 "extra_args", "launcher.extra_args", "a NUL character in \"--qos=hi\\x00gh\""},
        BadSpace{"PlaceholderInSlurmExtraArgs",
                 [](SpaceOptions& o) { o.launcher = "kind = \"slurm\"\nextra_args = [\"--comment={trial_id}\"]\n"; },
                 "extra_args", "launcher.extra_args", "not in srun's extra_args: \"--comment={trial_id}\""}),
    [](const auto& info) { return std::string(info.param.name); });

// Flags and ids: exit 2 with a message naming what was wrong.
class BadFlags : public ::testing::Test {
 protected:
  void SetUp() override {
    SpaceOptions o;
    o.axes = "\"training.local_batch_size\" = [1]\n";
    study_ = write_space(dir_, o);
    ASSERT_EQ(tune({"--space", study_.space}, dir_.path()).exit_code, 0);
  }

  void expect_bad(const std::vector<std::string>& args, const std::vector<std::string>& mentions) {
    Result r = tune(args, dir_.path());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    for (const auto& m : mentions) EXPECT_NE(r.err.find(m), std::string::npos) << "expected '" << m << "'\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }

  TempDir dir_;
  Study study_;
};

TEST_F(BadFlags, MissingSpaceFile) {
  const std::string missing = dir_.file("nope.toml");
  expect_bad({"--space", missing}, {missing});
  expect_bad({"plan", "--space", missing}, {missing});
  EXPECT_FALSE(fs::exists(missing));
}

TEST_F(BadFlags, BadFormat) {
  for (const char* cmd : {"list", "best"})
    expect_bad({cmd, "--db", study_.db, "--format", "yaml"}, {"--format", "'yaml'"});
  expect_bad({"export", "--db", study_.db, "--best", "--format", "table"}, {"--format", "'table'", "toml, cli, json"});
  expect_bad({"plan", "--space", study_.space, "--format", "csv"}, {"--format", "'csv'"});
}

TEST_F(BadFlags, UnknownTrialId) {
  expect_bad({"show", "--db", study_.db, "ffffffff"}, {"no trial with id 'ffffffff'", study_.name});
  expect_bad({"export", "--db", study_.db, "--trial", "ffffffff"}, {"no trial with id 'ffffffff'"});
}

TEST_F(BadFlags, CountsAndBudgetsThatAreNotNonNegativeNumbers) {
  expect_bad({"--space", study_.space, "--max-trials", "abc"},
             {"--max-trials: 'abc' is not a whole number in decimal digits"});
  expect_bad({"run", "--space", study_.space, "--max-trials", "-1"}, {"--max-trials: '-1' is negative"});
  expect_bad({"run", "--space", study_.space, "--time-budget", "soon"},
             {"--time-budget: 'soon' is not a duration (8h, 90m, 1h30m or seconds"});
  expect_bad({"--space", study_.space, "--time-budget", "-5"}, {"--time-budget: '-5' is negative"});
  expect_bad({"best", "--db", study_.db, "--top", "-1"}, {"--top: '-1' is negative"});
}

// The command line reads a value as the space file does, with its range:
// 0 trials and a budget of 0 were accepted here (exit 0, nothing run) and
// refused there; "0x10" was 16; "1e308h" printed a budget of -2147483648h.
TEST_F(BadFlags, CountsAndBudgetsHaveTheSpaceFilesParserAndRange) {
  expect_bad({"--space", study_.space, "--max-trials", "0"}, {"--max-trials: must be >= 1, got 0"});
  expect_bad({"--space", study_.space, "--max-trials", "0x10"},
             {"--max-trials: '0x10' is not a whole number in decimal digits"});
  expect_bad({"best", "--db", study_.db, "--top", "0x10"}, {"--top: '0x10' is not a whole number"});
  expect_bad({"--space", study_.space, "--time-budget", "0"}, {"--time-budget: must be more than 0 s, got 0"});
  expect_bad({"--space", study_.space, "--time-budget", "0x10"}, {"--time-budget: '0x10' is not a duration"});
  expect_bad({"--space", study_.space, "--time-budget", "1e308h"}, {"--time-budget: '1e308h' is not a duration"});
  expect_bad({"--space", study_.space, "--time-budget", "9000000h"},
             {"--time-budget: must be at most 3.16224e+07 s (366 days)"});
  // Leading zeros are decimal, not octal.
  Result r = tune({"--space", study_.space, "--max-trials", "010"}, dir_.path());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

TEST_F(BadFlags, MissingDatabaseIsNotCreated) {
  const std::string missing = dir_.file("typo.db");
  expect_bad({"list", "--db", missing}, {missing});
  EXPECT_FALSE(fs::exists(missing));
}

TEST_F(BadFlags, UnwritableExportFile) {
  const std::string out = dir_.file("no/such/folder/best.toml");
  expect_bad({"export", "--db", study_.db, "--best", "-o", out}, {out, "cannot write"});
}

TEST_F(BadFlags, IngestOfMissingFilesOrANegativeWarmup) {
  const std::string log = kFixtures + "/logs/plain_4_decimals.log";
  const std::string config = kFixtures + "/configs/small.toml";
  const std::string missing = dir_.file("missing.toml");
  auto ingest = [&](const std::string& cfg, const std::string& lg, const std::string& warmup) {
    return std::vector<std::string>{"ingest",   "--db", study_.db,        "--study", study_.name,
                                    "--config", cfg,    "--warmup-steps", warmup,    lg};
  };
  expect_bad(ingest(missing, log, "1"), {missing});
  expect_bad(ingest(config, dir_.file("missing.log"), "1"), {dir_.file("missing.log"), "cannot read"});
  Result fresh =
      tune({"ingest", "--db", dir_.file("new.db"), "--study", "s", "--config", config, log, dir_.file("missing.log")},
           dir_.path());
  EXPECT_EQ(fresh.exit_code, 2) << fresh.describe();
  EXPECT_FALSE(fs::exists(dir_.file("new.db"))) << "a failed ingest created the db";
  expect_bad(ingest(config, log, "-1"), {"--warmup-steps: '-1' is negative"});
  // A space file is not a job config: the message names its first foreign key.
  expect_bad(ingest(study_.space, log, "1"), {study_.space + ":", "not a torchtitan"});
}

TEST_F(BadFlags, UnknownObjectiveAndStudy) {
  expect_bad({"best", "--db", study_.db, "--objective", "speed"}, {"'speed'", "mfu, tps or tflops"});
  expect_bad({"list", "--db", study_.db, "--study", "other"}, {"no study named 'other'", study_.db});
}

}  // namespace
}  // namespace partune::cli_testing
