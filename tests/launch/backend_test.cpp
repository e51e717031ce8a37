// The backends' process lists, and one trial end to end through the command
// backend: fake_trainer -> Launcher -> Parser -> summary and failure class.
#include "tuner/launch/backend.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "tuner/launch/command_backend.h"
#include "tuner/launch/embedded_backend.h"
#include "tuner/launch/torchtitan_backend.h"
#include "tuner/parse/log_parser.h"
#include "tuner/space/space.h"

namespace partune {
namespace {

TrialLaunchContext context() {
  TrialLaunchContext ctx;
  ctx.trial_id = "abc123";
  ctx.config_file = "/r/s/trial-abc123/config.toml";
  ctx.log_dir = "/r/s/trial-abc123";
  ctx.devices = 4;
  ctx.nodes = 1;
  ctx.device_type = "cpu";
  ctx.extra_env = {{"PARTUNE_STUDY_TOKEN", "t1"}};
  return ctx;
}

TEST(Backend, EmbeddedOneProcessPerRankWithTorchrunEnv) {
  auto procs = EmbeddedBackend("/b/bin/trainer").processes(context(), 29123);
  ASSERT_EQ(procs.size(), 4u);
  for (int r = 0; r < 4; ++r) {
    const auto& p = procs[static_cast<size_t>(r)];
    EXPECT_EQ(p.argv,
              (std::vector<std::string>{"/b/bin/trainer", "--job.config_file", "/r/s/trial-abc123/config.toml"}));
    EXPECT_EQ(p.env.at("RANK"), std::to_string(r));
    EXPECT_EQ(p.env.at("LOCAL_RANK"), std::to_string(r));
    EXPECT_EQ(p.env.at("WORLD_SIZE"), "4");
    EXPECT_EQ(p.env.at("LOCAL_WORLD_SIZE"), "4");
    EXPECT_EQ(p.env.at("MASTER_ADDR"), "127.0.0.1");
    EXPECT_EQ(p.env.at("MASTER_PORT"), "29123");
    EXPECT_EQ(p.env.at("PARTUNE_METRICS_DIR"), "/r/s/trial-abc123");
    EXPECT_EQ(p.env.at("PARTUNE_STUDY_TOKEN"), "t1");
    EXPECT_EQ(p.env.at("PYTORCH_ALLOC_CONF"), "expandable_segments:True");  // as production runs
  }
  auto ctx = context();
  ctx.extra_env["PYTORCH_ALLOC_CONF"] = "backend:native";  // the user's own setting wins
  EXPECT_EQ(EmbeddedBackend("/b/bin/trainer").processes(ctx, 29123).at(0).env.at("PYTORCH_ALLOC_CONF"),
            "backend:native");
  auto two_nodes = context();
  two_nodes.nodes = 2;
  EXPECT_THROW(EmbeddedBackend("/b/bin/trainer").processes(two_nodes, 1), InputError);
}

TEST(Backend, MadeFromTheSpaceBackendSection) {
  BackendSpec spec;
  spec.kind = "embedded";
  auto embedded = make_backend(spec, "/b/bin/trainer");
  EXPECT_TRUE(embedded->one_process_per_rank());
  EXPECT_EQ(embedded->processes(context()).at(0).argv.at(0), "/b/bin/trainer");

  spec.kind = "torchtitan";
  spec.workdir = "/src/tt";
  auto tt = make_backend(spec, "/b/bin/trainer");
  EXPECT_FALSE(tt->one_process_per_rank());
  EXPECT_EQ(tt->processes(context()).at(0).argv.at(0), "torchrun");
  EXPECT_EQ(tt->processes(context()).at(0).cwd, "/src/tt");

  spec.kind = "command";
  spec.argv = {"run", "{trial_id}"};
  auto cmd = make_backend(spec, "/b/bin/trainer");
  EXPECT_EQ(cmd->processes(context()).at(0).argv, (std::vector<std::string>{"run", "abc123"}));
  EXPECT_EQ(cmd->processes(context()).at(0).cwd, "/src/tt");  // the trial runs in the workdir

  spec.kind = "slurm";
  EXPECT_THROW(make_backend(spec, ""), std::invalid_argument);
}

TEST(Backend, EmbeddedEmulatedIsOneProcessStandingInForRankZero) {
  auto procs = EmbeddedBackend("/b/bin/trainer", /*emulate=*/true).processes(context(), 29123);
  ASSERT_EQ(procs.size(), 1u);  // one device, whatever the world
  EXPECT_EQ(procs[0].argv,
            (std::vector<std::string>{"/b/bin/trainer", "--job.config_file", "/r/s/trial-abc123/config.toml",
                                      "--emulate-world", "4", "--emulate-rank", "0"}));
  for (const char* rank_var : {"RANK", "WORLD_SIZE", "MASTER_PORT"}) EXPECT_FALSE(procs[0].env.count(rank_var));
  EXPECT_EQ(procs[0].env.at("PARTUNE_METRICS_DIR"), "/r/s/trial-abc123");
  EXPECT_EQ(procs[0].env.at("PYTORCH_ALLOC_CONF"), "expandable_segments:True");
  BackendSpec spec;
  spec.emulate = true;
  EXPECT_EQ(make_backend(spec, "/b/bin/trainer")->processes(context()).size(), 1u);
}

TEST(Backend, FreeTcpPortCanBeBound) {
  int port = free_tcp_port();
  ASSERT_GT(port, 0);
  ASSERT_LT(port, 65536);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
}

TEST(Backend, TorchtitanIsTorchrunAsRunTrainShDoes) {
  auto procs =
      TorchtitanBackend("/venv/bin/torchrun",
                        {"--rdzv_backend", "c10d", "--rdzv_endpoint=localhost:0", "--role", "rank", "--tee", "3"}, "",
                        "/src/torchtitan")
          .processes(context());
  ASSERT_EQ(procs.size(), 1u);
  EXPECT_EQ(procs[0].argv,
            (std::vector<std::string>{"/venv/bin/torchrun", "--nproc_per_node=4", "--rdzv_backend", "c10d",
                                      "--rdzv_endpoint=localhost:0", "--role", "rank", "--tee", "3", "-m",
                                      "torchtitan.train", "--job.config_file", "/r/s/trial-abc123/config.toml"}));
  EXPECT_EQ(procs[0].env.at("PYTORCH_ALLOC_CONF"), "expandable_segments:True");
  EXPECT_EQ(procs[0].env.at("PARTUNE_STUDY_TOKEN"), "t1");
  EXPECT_EQ(procs[0].cwd, "/src/torchtitan");

  auto ctx = context();
  ctx.nodes = 2;
  auto multi = TorchtitanBackend("torchrun", {}, "my.train", "").processes(ctx);
  EXPECT_EQ(TorchtitanBackend("torchrun", {"--log-dir={log_dir}"}, "", "").processes(ctx)[0].argv.at(3),
            "--log-dir=/r/s/trial-abc123");  // placeholders in torchrun_args are filled in
  EXPECT_EQ(multi[0].argv, (std::vector<std::string>{"torchrun", "--nproc_per_node=4", "--nnodes=2", "-m", "my.train",
                                                     "--job.config_file", "/r/s/trial-abc123/config.toml"}));
}

TEST(Backend, CommandSubstitutesPlaceholdersInArgvAndEnv) {
  auto procs = CommandBackend({"run.py", "--cfg={config_file}", "-n", "{devices}", "{trial_id}/{log_dir}",
                               "{nodes}{device_type}", R"({"json": {"k": 1}})", "{}", "{ config_file }", "{1x}"},
                              {{"OUT", "{log_dir}/x"}, {"PARTUNE_STUDY_TOKEN", "user-tries"}})
                   .processes(context());
  ASSERT_EQ(procs.size(), 1u);
  EXPECT_EQ(procs[0].argv, (std::vector<std::string>{"run.py", "--cfg=/r/s/trial-abc123/config.toml", "-n", "4",
                                                     "abc123//r/s/trial-abc123", "1cpu", R"({"json": {"k": 1}})", "{}",
                                                     "{ config_file }", "{1x}"}));
  EXPECT_EQ(procs[0].env.at("OUT"), "/r/s/trial-abc123/x");
  EXPECT_EQ(procs[0].env.at("PARTUNE_STUDY_TOKEN"), "t1");  // the tuner's variables win
}

TEST(Backend, CommandUnknownPlaceholderIsAnInputError) {
  try {
    CommandBackend({"x", "--steps={stpes}"}, {}).processes(context());
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown placeholder {stpes}"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--steps={stpes}"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CommandBackend({"x"}, {{"K", "{nope}"}}).processes(context()), InputError);
  EXPECT_THROW(CommandBackend({}, {}).processes(context()), InputError);
}

// One trial end to end: the command backend runs fake_trainer on a config.
struct TrialOutcome {
  LaunchResult result;
  TrialLogState log;
  FailureClass failure;
};

TrialOutcome run_command_trial(const std::vector<std::string>& extra) {
  auto ctx = context();
  ctx.config_file = std::string(PARTUNE_FIXTURES_DIR) + "/configs/small.toml";
  std::vector<std::string> argv = {PARTUNE_FAKE_TRAINER, "--config", "{config_file}", "--color", "--rank-prefix"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto procs = CommandBackend(argv, {}).processes(ctx);
  TrialOutcome o;
  LaunchOptions opts;
  opts.timeout_s = 10;
  o.result = launch(procs, opts, [&](size_t, std::string_view line) { o.log.feed(line); });
  auto [code, sig] = trial_exit(o.result);
  o.failure = classify_exit(code, sig, o.result.timed_out, o.result.hung, o.log);
  return o;
}

TEST(EndToEnd, CommandBackendHealthyTrial) {
  auto o = run_command_trial({"--training.steps", "6"});
  EXPECT_EQ(o.failure, FailureClass::None);
  ASSERT_EQ(o.log.steps().size(), 6u);
  auto m = o.log.summarize(1);
  EXPECT_EQ(m.counted_steps, 5);
  ASSERT_TRUE(m.mfu && m.tps && m.tflops && m.memory_gib);
  // fake_trainer's numbers are consistent the way torchtitan's are.
  EXPECT_NEAR(*m.tflops, *m.mfu / 100 * o.log.peak_flops() / 1e12, 0.06);  // mfu is printed to 0.01%
  EXPECT_EQ(m.alloc_retries, 0);
}

TEST(EndToEnd, CommandBackendNearTheLimitRetries) {
  // small.toml: 2 x 1024 tokens, selective AC -> about 9 GiB; 9.5 GiB is within 10%.
  auto o = run_command_trial({"--memory-gib", "9.5"});
  EXPECT_EQ(o.failure, FailureClass::None);
  EXPECT_GT(o.log.alloc_retries(), 0);
}

TEST(EndToEnd, CommandBackendOom) {
  auto o = run_command_trial({"--memory-gib", "4"});
  EXPECT_EQ(o.failure, FailureClass::Oom);
  EXPECT_EQ(o.result.exit_codes[0], 1);
  EXPECT_EQ(o.log.failure_rank(), 0);
  EXPECT_NE(o.log.failure_message().find("CUDA out of memory"), std::string::npos);
}

TEST(EndToEnd, CommandBackendCrash) {
  auto o = run_command_trial({"--crash-after", "2"});
  EXPECT_EQ(o.failure, FailureClass::Error);
  EXPECT_EQ(o.log.failure_message(), "RuntimeError: fake trainer crashed at step 2");
  EXPECT_EQ(o.log.steps().size(), 2u);
}

}  // namespace
}  // namespace partune
