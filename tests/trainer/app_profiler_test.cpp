// trainer/train/profiler: torchtitan v0.2.2's [profiling] traces. The
// schedule (torch.profiler.schedule's phases), the files a CPU run writes
// (iteration_<step>/rank<R>_trace.json under dump_folder/save_traces_folder),
// what they hold (Chrome-trace JSON with ATen operators of the traced steps
// only), errors when a trace cannot be started or written, and the config
// errors of bad schedule values.
#include <gtest/gtest.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "app_testing.h"
#include "common/error.h"
#include "model_testing.h"
#include "trainer/config/trainer_config.h"
#include "trainer/train/profiler.h"
#include "trainer/train/trainer.h"

namespace partune::trainer {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::TempDir;

// ---- the schedule ----------------------------------------------------------

ProfilingConfig schedule(int64_t freq, int64_t warmup, int64_t active) {
  ProfilingConfig p;
  p.enable = true;
  p.freq = freq;
  p.warmup = warmup;
  p.active = active;
  return p;
}

std::string phases(const ProfilingConfig& p, int64_t n) {  // one letter a profiler step: - w r S
  std::string s;
  for (int64_t i = 0; i < n; ++i) {
    switch (profiler_phase(p, i)) {
      case ProfilerPhase::Wait:
        s += '-';
        break;
      case ProfilerPhase::Warmup:
        s += 'w';
        break;
      case ProfilerPhase::Record:
        s += 'r';
        break;
      case ProfilerPhase::RecordAndSave:
        s += 'S';
        break;
    }
  }
  return s;
}

TEST(AppProfiler, ScheduleIsTorchProfilerScheduleWithWaitFreqMinusWarmupAndActive) {
  // torchtitan's defaults: wait 10 - (3 + 1) = 6, warmup 3, active 1, repeated.
  EXPECT_EQ(phases(schedule(10, 3, 1), 20), "------wwwS------wwwS");
  EXPECT_EQ(phases(schedule(4, 0, 2), 8), "--rS--rS");
  EXPECT_EQ(phases(schedule(2, 1, 1), 4), "wSwS");  // wait 0
  EXPECT_EQ(phases(schedule(1, 0, 1), 3), "SSS");
  EXPECT_EQ(phases(schedule(5, 1, 3), 5), "-wrrS");
}

TEST(AppProfiler, TracePathIsIterationFolderAndRankFile) {
  ProfilingConfig p = schedule(10, 3, 1);
  p.traces_folder = "out/profile_traces";
  EXPECT_EQ(profiler_trace_path(p, 10, 0), "out/profile_traces/iteration_10/rank0_trace.json");
  EXPECT_EQ(profiler_trace_path(p, 20, 3), "out/profile_traces/iteration_20/rank3_trace.json");
}

// ---- runs ------------------------------------------------------------------

TrainerConfig tiny_run(int64_t steps, const fs::path& traces, int64_t freq, int64_t warmup, int64_t active) {
  TrainerConfig c;
  c.model_name = "qwen3";
  c.flavor = testing::tiny_flavor(/*moe=*/false);
  c.local_batch_size = 2;
  c.global_batch_size = 2;
  c.grad_accum_steps = 1;
  c.seq_len = 16;
  c.steps = steps;
  c.mixed_precision_param = "float32";
  c.optimizer.lr = 1e-3;
  c.lr_scheduler.warmup_steps = 1;
  c.ac = {ACMode::None, 1};
  c.log_freq = 1;
  c.seed = 5;
  c.profiling = schedule(freq, warmup, active);
  c.profiling.traces_folder = traces.string();
  return c;
}

std::string train(const TrainerConfig& c) {  // the text lines
  std::ostringstream out;
  MetricsFile file(std::nullopt, c.rank);
  Trainer t(c, torch::kCPU, out, file);
  t.train();
  return out.str();
}

// Every file under root, relative, sorted.
std::set<std::string> files_under(const fs::path& root) {
  std::set<std::string> s;
  if (!fs::exists(root)) return s;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) s.insert(fs::relative(e.path(), root).generic_string());
  return s;
}

nlohmann::json read_trace(const fs::path& p) {
  std::ifstream f(p);
  EXPECT_TRUE(f.good()) << p;
  return nlohmann::json::parse(f);  // throws (fails the test) when not JSON
}

const nlohmann::json& trace_events(const nlohmann::json& trace) {
  EXPECT_TRUE(trace.is_object() && trace.contains("traceEvents") && trace["traceEvents"].is_array());
  return trace.at("traceEvents");
}

int64_t count_named(const nlohmann::json& trace, const std::string& name) {
  int64_t n = 0;
  for (const auto& e : trace_events(trace))
    if (e.value("name", "") == name) ++n;
  return n;
}

int64_t count_aten(const nlohmann::json& trace) {
  int64_t n = 0;
  for (const auto& e : trace_events(trace))
    if (e.value("name", "").rfind("aten::", 0) == 0) ++n;
  return n;
}

// Matrix products of one training step of tiny_run: forward and backward.
// Every traced step of every run below runs the same ops.
constexpr const char* kMatmul = "aten::mm";

TEST(AppProfiler, WritesOneTraceEveryProfileFreqSteps) {
  TempDir dir("prof");
  const fs::path traces = dir.path() / "outputs" / "profile_traces";
  const std::string out = train(tiny_run(/*steps=*/4, traces, /*freq=*/2, /*warmup=*/0, /*active=*/1));
  EXPECT_EQ(files_under(traces),
            (std::set<std::string>{"iteration_2/rank0_trace.json", "iteration_4/rank0_trace.json"}));
  for (const char* it : {"iteration_2", "iteration_4"}) {
    const nlohmann::json t = read_trace(traces / it / "rank0_trace.json");
    EXPECT_GT(count_aten(t), 0) << it;
    EXPECT_GT(count_named(t, kMatmul), 0) << it;
    for (const auto& e : trace_events(t)) {  // Chrome trace events: a phase; complete ones a time span
      ASSERT_TRUE(e.contains("ph")) << e.dump();
      if (e["ph"] == "X") {
        ASSERT_TRUE(e.contains("ts") && e.contains("dur")) << e.dump();
      }
    }
  }
  // Rank 0 says where traces go and when each is written, after the step's line.
  EXPECT_NE(out.find("Profiling active"), std::string::npos) << out;
  const size_t step2 = out.find("step:  2"), written2 = out.find("Profiler trace of step 2 written to");
  ASSERT_NE(step2, std::string::npos) << out;
  ASSERT_NE(written2, std::string::npos) << out;
  EXPECT_LT(step2, written2);
  EXPECT_NE(out.find("Profiler trace of step 4 written to"), std::string::npos) << out;
  EXPECT_EQ(out.find("Profiler trace of step 1 "), std::string::npos) << out;
  EXPECT_EQ(out.find("Profiler trace of step 3 "), std::string::npos) << out;
}

// One traced step's count of kMatmul (a step other than the first).
int64_t matmuls_per_step() {
  TempDir dir("prof_ref");
  train(tiny_run(/*steps=*/2, dir.path(), /*freq=*/2, /*warmup=*/0, /*active=*/1));  // traces step 2
  return count_named(read_trace(dir.path() / "iteration_2" / "rank0_trace.json"), kMatmul);
}

TEST(AppProfiler, WarmupStepsAreNotInTheTraceActiveStepsAre) {
  const int64_t m = matmuls_per_step();
  ASSERT_GT(m, 0);
  {  // wait 1, warmup 1, active 1: steps 3 and 6 traced, 2 and 5 only warm the profiler up
    TempDir dir("prof_w");
    train(tiny_run(/*steps=*/6, dir.path(), /*freq=*/3, /*warmup=*/1, /*active=*/1));
    EXPECT_EQ(files_under(dir.path()),
              (std::set<std::string>{"iteration_3/rank0_trace.json", "iteration_6/rank0_trace.json"}));
    EXPECT_EQ(count_named(read_trace(dir.path() / "iteration_3" / "rank0_trace.json"), kMatmul), m);
    EXPECT_EQ(count_named(read_trace(dir.path() / "iteration_6" / "rank0_trace.json"), kMatmul), m);
  }
  {  // wait 1, active 2: steps 2-3 in one trace, 5-6 in the next
    TempDir dir("prof_a");
    train(tiny_run(/*steps=*/6, dir.path(), /*freq=*/3, /*warmup=*/0, /*active=*/2));
    EXPECT_EQ(files_under(dir.path()),
              (std::set<std::string>{"iteration_3/rank0_trace.json", "iteration_6/rank0_trace.json"}));
    EXPECT_EQ(count_named(read_trace(dir.path() / "iteration_3" / "rank0_trace.json"), kMatmul), 2 * m);
    EXPECT_EQ(count_named(read_trace(dir.path() / "iteration_6" / "rank0_trace.json"), kMatmul), 2 * m);
  }
}

TEST(AppProfiler, EndOfTrainingWritesACycleCutShortWhileRecording) {
  const int64_t m = matmuls_per_step();
  TempDir dir("prof_exit");
  // wait 2, active 2: step 3 is recording when training ends after it.
  train(tiny_run(/*steps=*/3, dir.path(), /*freq=*/4, /*warmup=*/0, /*active=*/2));
  EXPECT_EQ(files_under(dir.path()), (std::set<std::string>{"iteration_3/rank0_trace.json"}));
  EXPECT_EQ(count_named(read_trace(dir.path() / "iteration_3" / "rank0_trace.json"), kMatmul), m);

  // wait 0, warmup 1, active 1: step 5 only warms up, and the step() after it
  // starts recording profiler step 5 (a cycle's last); the exit writes that
  // recording, which holds no training step, as torch.profiler does.
  TempDir dir2("prof_exit_w");
  train(tiny_run(/*steps=*/5, dir2.path(), /*freq=*/2, /*warmup=*/1, /*active=*/1));
  EXPECT_EQ(files_under(dir2.path()),
            (std::set<std::string>{"iteration_2/rank0_trace.json", "iteration_4/rank0_trace.json",
                                   "iteration_5/rank0_trace.json"}));
  EXPECT_EQ(count_named(read_trace(dir2.path() / "iteration_4" / "rank0_trace.json"), kMatmul), m);
  EXPECT_EQ(count_named(read_trace(dir2.path() / "iteration_5" / "rank0_trace.json"), kMatmul), 0);
}

TEST(AppProfiler, LastTraceIsNotOverwrittenByTheEmptyExitTrace) {
  const int64_t m = matmuls_per_step();
  TempDir dir("prof_last");
  // freq = warmup + active: the step() after step 2 writes its trace and starts
  // the next cycle, which training ends at once.
  train(tiny_run(/*steps=*/2, dir.path(), /*freq=*/1, /*warmup=*/0, /*active=*/1));
  EXPECT_EQ(files_under(dir.path()),
            (std::set<std::string>{"iteration_1/rank0_trace.json", "iteration_2/rank0_trace.json"}));
  EXPECT_EQ(count_named(read_trace(dir.path() / "iteration_2" / "rank0_trace.json"), kMatmul), m);
}

TEST(AppProfiler, EveryRankWritesItsOwnFileAndOnlyRankZeroPrints) {
  TempDir dir("prof_rank");
  TrainerConfig c = tiny_run(/*steps=*/2, dir.path(), /*freq=*/2, /*warmup=*/0, /*active=*/1);
  c.rank = 1;
  const std::string out = train(c);
  EXPECT_EQ(files_under(dir.path()), (std::set<std::string>{"iteration_2/rank1_trace.json"}));
  EXPECT_GT(count_aten(read_trace(dir.path() / "iteration_2" / "rank1_trace.json")), 0);
  EXPECT_EQ(out.find("Profil"), std::string::npos) << out;
}

TEST(AppProfiler, DisabledWritesNothing) {
  TempDir dir("prof_off");
  TrainerConfig c = tiny_run(/*steps=*/2, dir.path() / "traces", /*freq=*/1, /*warmup=*/0, /*active=*/1);
  c.profiling.enable = false;
  const std::string out = train(c);
  EXPECT_FALSE(fs::exists(dir.path() / "traces"));
  EXPECT_EQ(out.find("Profil"), std::string::npos) << out;
}

TEST(AppProfiler, ATraceThatCannotBeWrittenIsAnError) {
  TempDir dir("prof_nowrite");
  std::ofstream(dir.path() / "iteration_2") << "in the way";  // a file where the folder must go
  const TrainerConfig c = tiny_run(/*steps=*/4, dir.path(), /*freq=*/2, /*warmup=*/0, /*active=*/1);
  std::ostringstream out;
  MetricsFile file(std::nullopt, 0);
  Trainer t(c, torch::kCPU, out, file);
  try {
    t.train();
    FAIL() << "no error";
  } catch (const InputError& e) {
    FAIL() << "a run-time failure is not bad input: " << e.what();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("profiling: could not write the trace of step 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find((dir.path() / "iteration_2" / "rank0_trace.json").string()), std::string::npos) << msg;
  }
  EXPECT_EQ(t.step(), 2);                                  // it failed where the trace was due
  EXPECT_FALSE(torch::profiler::impl::profilerEnabled());  // and left no profiler running
}

TEST(AppProfiler, ATracesFolderThatCannotBeCreatedIsBadInput) {
  TempDir dir("prof_nodir");
  std::ofstream(dir.path() / "file") << "not a folder";
  const TrainerConfig c = tiny_run(/*steps=*/2, dir.path() / "file" / "traces", /*freq=*/2, /*warmup=*/0, /*active=*/1);
  std::ostringstream out;
  MetricsFile file(std::nullopt, 0);
  Trainer t(c, torch::kCPU, out, file);
  try {
    t.train();
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'profiling.save_traces_folder'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.step(), 0);  // nothing was trained
}

TEST(AppProfiler, AProfilerThatCannotStartIsAnError) {
  namespace kp = torch::autograd::profiler;
  namespace impl = torch::profiler::impl;
  TempDir dir("prof_nostart");
  ProfilingConfig p = schedule(/*freq=*/1, /*warmup=*/0, /*active=*/1);  // records from profiler step 0
  p.traces_folder = dir.path().string();
  // Another profiler already runs on this thread: Kineto refuses a second one.
  const impl::ProfilerConfig other(impl::ProfilerState::KINETO);
  kp::prepareProfiler(other, {impl::ActivityType::CPU});
  kp::enableProfiler(other, {impl::ActivityType::CPU});
  try {
    StepProfiler sp(p, /*rank=*/0, /*cuda=*/false, /*global_step=*/0, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("profiling: could not"), std::string::npos) << e.what();
  }
  kp::disableProfiler();
  EXPECT_FALSE(impl::profilerEnabled());
}

// ---- config ----------------------------------------------------------------

const char* kBase = R"(
[model]
name = "qwen3"
flavor = "debugmodel"

[training]
local_batch_size = 2
seq_len = 64
steps = 4
)";

TEST(AppProfilerConfig, KeysAndTheTracesFolder) {
  TempDir dir("prof_cfg");
  const std::string f = dir.write("a.toml", kBase);
  ProfilingConfig p = parse_trainer_args({"--job.config_file", f}).profiling;
  EXPECT_FALSE(p.enable);
  p = parse_trainer_args({"--job.config_file", f, "--profiling.enable_profiling"}).profiling;  // torchtitan's defaults
  EXPECT_TRUE(p.enable);
  EXPECT_EQ(p.traces_folder, "./outputs/profile_traces");
  EXPECT_EQ(p.freq, 10);
  EXPECT_EQ(p.warmup, 3);
  EXPECT_EQ(p.active, 1);
  p = parse_trainer_args({"--job.config_file", f, "--profiling.enable_profiling", "--job.dump_folder", "/tmp/run7",
                          "--profiling.save_traces_folder", "tr", "--profiling.profile_freq", "5",
                          "--profiling.profiler_warmup", "2", "--profiling.profiler_active", "3"})
          .profiling;
  EXPECT_EQ(p.traces_folder, "/tmp/run7/tr");
  EXPECT_EQ(p.freq, 5);
  EXPECT_EQ(p.warmup, 2);
  EXPECT_EQ(p.active, 3);
  // An absolute save_traces_folder stands alone (os.path.join).
  p = parse_trainer_args({"--job.config_file", f, "--profiling.enable_profiling", "--job.dump_folder", "/tmp/run7",
                          "--profiling.save_traces_folder", "/data/tr"})
          .profiling;
  EXPECT_EQ(p.traces_folder, "/data/tr");
}

TEST(AppProfilerConfig, BadScheduleValuesAreInputErrorsNamingTheKey) {
  TempDir dir("prof_cfg");
  const std::string f = dir.write("a.toml", kBase);
  const std::vector<std::string> on = {"--job.config_file", f, "--profiling.enable_profiling"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = on;
    a.insert(a.end(), extra.begin(), extra.end());
    return error_of(a);
  };
  // torchtitan: profile_freq must be at least warmup + active (defaults 3 + 1).
  EXPECT_EQ(with({"--profiling.profile_freq", "3"}),
            "command line: key 'profiling.profile_freq': must be >= profiling.profiler_warmup + "
            "profiling.profiler_active = 4, got 3");
  EXPECT_NE(with({"--profiling.profile_freq", "-1"}).find("key 'profiling.profile_freq'"), std::string::npos);
  EXPECT_NE(
      with({"--profiling.profiler_active", "3", "--profiling.profile_freq", "5"}).find("key 'profiling.profile_freq'"),
      std::string::npos);
  // torch.profiler.schedule: active > 0, warmup >= 0.
  EXPECT_EQ(with({"--profiling.profiler_active", "0"}),
            "command line: key 'profiling.profiler_active': must be > 0 (steps traced per cycle), got 0");
  EXPECT_EQ(with({"--profiling.profiler_warmup", "-1"}),
            "command line: key 'profiling.profiler_warmup': must be >= 0, got -1");
  // Good values pass.
  EXPECT_EQ(with({"--profiling.profile_freq", "4"}), "<no error>");
  EXPECT_EQ(with({"--profiling.profile_freq", "1", "--profiling.profiler_warmup", "0"}), "<no error>");
  // From the file, the message names the file.
  const std::string g =
      dir.write("b.toml", std::string(kBase) + "[profiling]\nenable_profiling = true\nprofile_freq = 2\n");
  EXPECT_EQ(error_of({"--job.config_file", g}).rfind(g + ": key 'profiling.profile_freq': ", 0), 0u)
      << error_of({"--job.config_file", g});
  // Profiling off: the values are not used, so not checked (as torchtitan).
  EXPECT_EQ(error_of({"--job.config_file", f, "--profiling.profile_freq", "0", "--profiling.profiler_active", "0"}),
            "<no error>");
}

}  // namespace
}  // namespace partune::trainer
