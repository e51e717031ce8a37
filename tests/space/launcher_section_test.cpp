// The [launcher] section (issue 13): defaults, every key, and a clear error
// naming file, line and key for each bad value.
#include <gtest/gtest.h>

#include "common/error.h"
#include "tuner/space/space.h"

namespace partune {
namespace {

std::string error_of(const std::string& text) {
  try {
    load_space_from_string(text, "l.toml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LauncherSection, DefaultsToOneLocalTrialAtATime) {
  const Space s = load_space_from_string("[study]\nname = \"x\"\n", "l.toml");
  EXPECT_EQ(s.launcher.kind, "local");
  EXPECT_EQ(s.launcher.parallel_trials, 1);
  EXPECT_TRUE(s.launcher.partition.empty());
  EXPECT_FALSE(s.launcher.time_limit_s);
}

TEST(LauncherSection, ReadsEveryKey) {
  const Space s = load_space_from_string(R"([study]
name = "x"
[hardware]
nodes = 2
[launcher]
kind = "slurm"
partition = "h200"
account = "ml-team"
time_limit = "1h30m"
extra_args = ["--mpi=none", "--cpu-bind=none"]
parallel_trials = 4
)",
                                         "l.toml");
  EXPECT_EQ(s.launcher.kind, "slurm");
  EXPECT_EQ(s.launcher.partition, "h200");
  EXPECT_EQ(s.launcher.account, "ml-team");
  EXPECT_DOUBLE_EQ(*s.launcher.time_limit_s, 5400);
  EXPECT_EQ(s.launcher.extra_args, (std::vector<std::string>{"--mpi=none", "--cpu-bind=none"}));
  EXPECT_EQ(s.launcher.parallel_trials, 4);
  EXPECT_EQ(load_space_from_string("[study]\nname = \"x\"\n[launcher]\nparallel_trials = 3\n", "l.toml")
                .launcher.parallel_trials,
            3);
}

TEST(LauncherSection, BadValuesNameFileLineAndKey) {
  const std::string head = "[study]\nname = \"x\"\n[launcher]\n";
  EXPECT_EQ(error_of(head + "kind = \"pbs\"\n"), "l.toml:4:8: key 'launcher.kind': \"pbs\" is not one of local, slurm");
  EXPECT_EQ(error_of(head + "parallel_trials = 0\n"),
            "l.toml:4:19: key 'launcher.parallel_trials': must be in [1, 4096], got 0");
  EXPECT_EQ(error_of(head + "parallel_trials = \"2\"\n"),
            "l.toml:4:19: key 'launcher.parallel_trials': expected an integer");
  EXPECT_EQ(error_of(head + "partition = \"h200\"\n"),
            "l.toml:4:1: key 'launcher.partition': only used by kind = \"slurm\" (this launcher is \"local\")");
  EXPECT_EQ(error_of(head + "kind = \"slurm\"\nextra_args = \"--mpi=none --exclusive\"\n"),
            "l.toml:5:14: key 'launcher.extra_args': expected an array of strings (srun's argv, never a shell "
            "string)");
  EXPECT_EQ(error_of(head + "kind = \"slurm\"\ntime_limit = \"soon\"\n"),
            "l.toml:5:14: key 'launcher.time_limit': expected a duration such as \"30m\", \"2h\" or seconds > 0");
  EXPECT_EQ(error_of(head + "kind = \"slurm\"\naccount = \"a b\"\n"),
            "l.toml:5:11: key 'launcher.account': \"a b\" must be one non-empty Slurm name");
  EXPECT_EQ(error_of(head + "paralel_trials = 2\n"),
            "l.toml:4:1: key 'launcher.paralel_trials': unknown key (known: kind, partition, account, time_limit, "
            "extra_args, parallel_trials)");
  // Two nodes with the local launcher would start nothing on the second.
  EXPECT_EQ(error_of("[study]\nname = \"x\"\n[hardware]\nnodes = 2\n"),
            "l.toml:4:9: key 'hardware.nodes': 2 nodes need [launcher] kind = \"slurm\" (the local launcher runs "
            "every process on this machine and would start nothing on the others)");
}

}  // namespace
}  // namespace partune
