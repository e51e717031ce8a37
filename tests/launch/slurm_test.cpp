// The Slurm launcher's pure parts: the srun argv, the slots' node sets, the
// step names. (tests/slurm runs them against a real Slurm.)
#include "tuner/launch/slurm.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "tuner/launch/cuda_devices.h"
#include "tuner/launch/torchtitan_backend.h"
#include "tuner/launch/trial_slots.h"

namespace partune {
namespace {

TEST(Slurm, SrunArgvSizesTheStepAndAppendsTheCommand) {
  LauncherSpec l;
  l.kind = "slurm";
  SrunShape shape;
  shape.name = step_name("tok", "abc");
  shape.nodes = {"gpu1", "gpu2"};
  shape.tasks_per_node = 8;
  shape.gpus_per_node = 8;
  EXPECT_EQ(srun_argv(l, shape, {"/bin/trainer", "--job.config_file", "c.toml"}),
            (std::vector<std::string>{"srun", "--label", "--job-name=partune.tok.abc", "--nodes=2",
                                      "--nodelist=gpu1,gpu2", "--ntasks-per-node=8", "--gpus-per-node=8", "--exclusive",
                                      "--kill-on-bad-exit=1", "/bin/trainer", "--job.config_file", "c.toml"}));
  l.partition = "h200";
  l.account = "ml";
  l.time_limit_s = 90;  // whole minutes, rounded up
  l.extra_args = {"--mpi=none", "--cpu-bind=none"};
  shape.gpus_per_node = 0;  // CPU trials ask for no GPU
  shape.nodes = {"n1"};
  EXPECT_EQ(srun_argv(l, shape, {"x"}),
            (std::vector<std::string>{"srun", "--label", "--job-name=partune.tok.abc", "--nodes=1", "--nodelist=n1",
                                      "--ntasks-per-node=8", "--exclusive", "--kill-on-bad-exit=1", "--partition=h200",
                                      "--account=ml", "--time=2", "--mpi=none", "--cpu-bind=none", "x"}));
  EXPECT_EQ(step_name_prefix("tok"), "partune.tok.");
}

TEST(Slurm, SlotsTakeDisjointNodesWhileThereAreEnough) {
  const std::vector<std::string> nodes = {"a", "b", "c", "d"};
  EXPECT_EQ(slurm_slot_nodes(nodes, 2, 2, "s.toml"), (std::vector<std::vector<std::string>>{{"a", "b"}, {"c", "d"}}));
  EXPECT_EQ(slurm_slot_nodes(nodes, 4, 1, "s.toml"),
            (std::vector<std::vector<std::string>>{{"a"}, {"b"}, {"c"}, {"d"}}));
  // More slots than nodes: round-robin, Slurm keeps the steps' devices apart.
  EXPECT_EQ(slurm_slot_nodes({"a"}, 3, 1, "s.toml"), (std::vector<std::vector<std::string>>{{"a"}, {"a"}, {"a"}}));
  try {
    slurm_slot_nodes({"a"}, 1, 2, "s.toml");
    FAIL() << "a 2-node trial in a 1-node allocation";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("s.toml: key 'hardware.nodes': a trial needs 2 nodes"), std::string::npos)
        << e.what();
  }
}

TEST(Slurm, TorchrunPerNodeGetsTheRendezvousAndTheNodeRankPlaceholder) {
  TrialLaunchContext ctx;
  ctx.config_file = "c.toml";
  ctx.devices = 8;
  ctx.nodes = 2;
  ctx.rdzv_endpoint = "10.0.0.1:29500";
  ctx.node_rank = "{node_rank}";
  const auto p = TorchtitanBackend("torchrun", {}, "", "").processes(ctx);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].argv, (std::vector<std::string>{"torchrun", "--nproc_per_node=8", "--nnodes=2",
                                                 "--node_rank={node_rank}", "--rdzv_endpoint=10.0.0.1:29500", "-m",
                                                 "torchtitan.train", "--job.config_file", "c.toml"}));
}

// The machine's device count, as the driver would say it.
std::function<std::optional<int>()> machine_with(std::optional<int> devices) {
  return [devices] { return devices; };
}

TEST(TrialSlots, OneSlotPinsNothing) {
  std::vector<std::string> notes;
  const auto s = local_slots(1, 8, "cuda", std::nullopt, machine_with(std::nullopt), {0, 1, 2, 3}, "s.toml", notes);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(s[0].env.empty());
  EXPECT_TRUE(s[0].cpus.empty());
}

TEST(TrialSlots, CudaSlotsSplitTheVisibleDevices) {
  std::vector<std::string> notes;
  auto s = local_slots(4, 2, "cuda", std::nullopt, machine_with(8), {}, "s.toml", notes);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].env.at("CUDA_VISIBLE_DEVICES"), "0,1");
  EXPECT_EQ(s[3].env.at("CUDA_VISIBLE_DEVICES"), "6,7");
  s = local_slots(2, 1, "cuda", "3,5,7", machine_with(std::nullopt), {}, "s.toml", notes);
  EXPECT_EQ(s[0].env.at("CUDA_VISIBLE_DEVICES"), "3");
  EXPECT_EQ(s[1].env.at("CUDA_VISIBLE_DEVICES"), "5");
  EXPECT_THROW(local_slots(2, 2, "cuda", "3,5,7", machine_with(8), {}, "s.toml", notes), InputError);
  EXPECT_TRUE(notes.empty());
}

std::string slots_error(const std::optional<std::string>& visible, std::optional<int> devices) {
  std::vector<std::string> notes;
  try {
    local_slots(2, 8, "cuda", visible, machine_with(devices), {}, "s.toml", notes);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// With CUDA_VISIBLE_DEVICES unset the machine's own devices are counted
// (8 and 2 trials gave slots 0..7 and 8..15 on any machine); an empty one
// is no device at all, not unset.
TEST(TrialSlots, TooFewCudaDevicesAreRefused) {
  const std::string need = "s.toml: key 'launcher.parallel_trials': 2 trials of 8 devices need 16 devices; ";
  EXPECT_EQ(slots_error(std::nullopt, 8), need + "this machine has 8 (CUDA_VISIBLE_DEVICES is unset)");
  EXPECT_EQ(slots_error(std::nullopt, std::nullopt)
                .rfind(need + "CUDA_VISIBLE_DEVICES is unset and this machine's "
                              "CUDA devices cannot be counted (no NVIDIA driver",
                       0),
            0u)
      << slots_error(std::nullopt, std::nullopt);
  EXPECT_EQ(slots_error(std::string(), 16), need + "CUDA_VISIBLE_DEVICES is set and empty: no device is visible");
  EXPECT_EQ(slots_error(std::nullopt, 16), "");
}

// The driver's count: no NVML library is no driver; the test hook answers
// instead when set.
TEST(CudaDevices, NoDriverIsNoCountAndTheHookAnswersWhenSet) {
  ::unsetenv(kCudaDeviceCountEnv);
  EXPECT_EQ(cuda_device_count("libpartune-no-such-nvml.so.1"), std::nullopt);
  ::setenv(kCudaDeviceCountEnv, "3", 1);
  EXPECT_EQ(cuda_device_count("libpartune-no-such-nvml.so.1"), 3);
  ::setenv(kCudaDeviceCountEnv, "none", 1);
  EXPECT_EQ(cuda_device_count(), std::nullopt);
  ::unsetenv(kCudaDeviceCountEnv);
}

TEST(TrialSlots, CpuSlotsSplitTheCpusAndSayWhenTheyOverlap) {
  std::vector<std::string> notes;
  auto s =
      local_slots(2, 1, "cpu", std::nullopt, machine_with(std::nullopt), {0, 1, 2, 3, 4, 5, 6, 7}, "s.toml", notes);
  EXPECT_EQ(s[0].cpus, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(s[1].cpus, (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(s[1].env.at("OMP_NUM_THREADS"), "4");
  EXPECT_TRUE(notes.empty());
  s = local_slots(4, 1, "cpu", std::nullopt, machine_with(std::nullopt), {0, 1}, "s.toml", notes);
  EXPECT_EQ(s[2].cpus, (std::vector<int>{0}));
  EXPECT_EQ(s[3].cpus, (std::vector<int>{1}));
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("overlap"), std::string::npos);
}

TEST(TrialSlots, TheLauncherPinsAProcessToItsCpus) {
  std::vector<ProcessSpec> procs(1);
  procs[0].argv = {"grep", "Cpus_allowed_list", "/proc/self/status"};
  procs[0].cpus = {0};
  std::string seen;
  const LaunchResult r = launch(procs, {}, [&](size_t, std::string_view line) { seen = line; });
  EXPECT_EQ(trial_exit(r).first, 0);
  EXPECT_EQ(seen, "Cpus_allowed_list:\t0");
}

// `scontrol show config` as Slurm 22.05 prints it, from a stand-in scontrol
// first on PATH (the parser under test; tests/slurm asks a real one).
TEST(Slurm, ConfigSecondsReadsTheKeyNamedAndNoOther) {
  const auto dir = std::filesystem::temp_directory_path() / ("partune_scontrol_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "scontrol");
    f << "#!/bin/sh\n[ \"$1 $2\" = \"show config\" ] || exit 1\n"
         "echo 'SlurmdTimeoutExtra      = 99 sec'\necho 'SlurmdTimeout           = 300 sec'\n"
         "echo 'MessageTimeout          = 10 sec'\necho 'SlurmctldTimeout        = bogus'\n";
  }
  std::filesystem::permissions(dir / "scontrol", std::filesystem::perms::owner_all);
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (dir.string() + ":" + old_path).c_str(), 1);
  const auto slurmd = slurm_config_seconds("SlurmdTimeout");
  const auto message = slurm_config_seconds("MessageTimeout");
  const auto bogus = slurm_config_seconds("SlurmctldTimeout");
  const auto absent = slurm_config_seconds("KillWait");
  ::setenv("PATH", old_path.c_str(), 1);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(slurmd.has_value());
  EXPECT_EQ(*slurmd, 300);  // not the 99 of a longer key that starts the same
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(*message, 10);
  EXPECT_FALSE(bogus.has_value());
  EXPECT_FALSE(absent.has_value());
}

}  // namespace
}  // namespace partune
