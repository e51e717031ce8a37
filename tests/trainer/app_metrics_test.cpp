// trainer/metrics: torchtitan's step line character for character, the
// Python format specs behind it, and the JSON-lines metrics file.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "app_testing.h"
#include "trainer/metrics/metrics.h"

namespace partune::trainer {
namespace {

using testing::TempDir;

TEST(AppMetrics, StepLineMatchesTorchtitan) {
  // torchtitan's documented step line (v0.2.2, colours off)
  StepLine s{40, 7.12345, 1.2034, 71.50, 51.17, 12345.0, 345.67, 34.95};
  EXPECT_EQ(format_step_line(s, false),
            "step: 40  loss:  7.12345  grad_norm:  1.2034  memory: 71.50GiB(51.17%)  tps: 12,345  tflops: 345.67  "
            "mfu: 34.95%");
  // widths: step right-aligned in 2, loss 8.5f, grad_norm 7.4f, memory 5.2f
  StepLine t{1, 10.375, 3.14159, 1.25, 3.90625, 1024.4, 0.0512, 0.5176};
  EXPECT_EQ(
      format_step_line(t, false),
      "step:  1  loss: 10.37500  grad_norm:  3.1416  memory:  1.25GiB(3.91%)  tps: 1,024  tflops: 0.05  mfu: 0.52%");
  // wider values overflow the widths as Python does; thousands in tps and tflops
  StepLine u{12345, 123.456789, 12345.6789, 141.0, 100.0, 1234567.5, 1234.567, 101.0};
  EXPECT_EQ(format_step_line(u, false),
            "step: 12345  loss: 123.45679  grad_norm: 12345.6789  memory: 141.00GiB(100.00%)  tps: 1,234,568  "
            "tflops: 1,234.57  mfu: 101.00%");
}

TEST(AppMetrics, StepLineColoursAreTorchtitans) {
  StepLine s{2, 1, 1, 1, 1, 1, 1, 1};
  const std::string line = format_step_line(s, true);
  EXPECT_EQ(line.substr(0, 5), "\033[31m");
  EXPECT_NE(line.find("\033[32mloss: "), std::string::npos);
  EXPECT_NE(line.find("\033[38;2;180;60;0mgrad_norm: "), std::string::npos);
  EXPECT_NE(line.find("\033[38;2;54;234;195mmemory: "), std::string::npos);
  EXPECT_NE(line.find("\033[34mtps: "), std::string::npos);
  EXPECT_NE(line.find("\033[36mtflops: "), std::string::npos);
  EXPECT_EQ(line.substr(line.size() - 5), "\033[39m");
}

TEST(AppMetrics, PythonFormatSpecs) {
  EXPECT_EQ(py_fixed(NAN, 8, 5), "     nan");
  EXPECT_EQ(py_fixed(-NAN, 8, 5), "     nan");
  EXPECT_EQ(py_fixed(INFINITY, 7, 4), "    inf");
  EXPECT_EQ(py_fixed(-1234567.891, 0, 2, true), "-1,234,567.89");
  EXPECT_EQ(py_fixed(999.999, 0, 2, true), "1,000.00");
  EXPECT_EQ(py_fixed(0.0, 0, 2, true), "0.00");
  // round() halves to even
  EXPECT_EQ(py_round_thousands(2.5), "2");
  EXPECT_EQ(py_round_thousands(3.5), "4");
  EXPECT_EQ(py_round_thousands(999999.6), "1,000,000");
  EXPECT_EQ(py_round_thousands(123.0), "123");
}

TEST(AppMetrics, PeakFlopsFromTableEnvAndFallback) {
  ::unsetenv("PARTUNE_PEAK_FLOPS");
  std::string warning;
  EXPECT_EQ(resolve_peak_flops("NVIDIA H100 80GB HBM3", &warning), 989e12);
  EXPECT_TRUE(warning.empty());
  EXPECT_EQ(resolve_peak_flops("Some CPU", &warning), 312e12);
  EXPECT_EQ(warning, "Peak flops undefined for: Some CPU, fallback to A100");
  ::setenv("PARTUNE_PEAK_FLOPS", "1.5e12", 1);
  EXPECT_EQ(resolve_peak_flops("NVIDIA H100 80GB HBM3", nullptr), 1.5e12);
  ::unsetenv("PARTUNE_PEAK_FLOPS");
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(AppMetrics, ProcessorPrintsAndWritesJsonLines) {
  TempDir dir("metrics");
  ::setenv("PARTUNE_PEAK_FLOPS", "1e12", 1);
  ::setenv("PARTUNE_DEVICE_MEMORY_GIB", "16", 1);
  DeviceMemoryMonitor memory(torch::kCPU);
  EXPECT_EQ(memory.capacity_source(), "PARTUNE_DEVICE_MEMORY_GIB");
  MetricsFile file(dir.path().string(), 0);
  MetricsSetup setup;
  setup.local_batch_size = 2;
  setup.global_batch_size = 4;
  setup.grad_accum_steps = 2;
  setup.seq_len = 8;
  setup.steps = 20;
  setup.warmup_steps = 3;
  setup.params = 100;
  setup.active_params = 50;
  setup.flops_per_token = 1e9;
  setup.log_freq = 5;
  std::ostringstream out;
  MetricsProcessor m(setup, memory, file, out, false);
  m.log_init(StartupStats{3.456, 1.25});
  EXPECT_TRUE(m.should_log(1));
  EXPECT_FALSE(m.should_log(2));
  EXPECT_TRUE(m.should_log(10));
  m.start();
  m.add_tokens(1000);
  StepLine s = m.log(1, 2.5, 0.75);
  ::unsetenv("PARTUNE_PEAK_FLOPS");
  ::unsetenv("PARTUNE_DEVICE_MEMORY_GIB");

  EXPECT_GT(s.tps, 0);
  EXPECT_DOUBLE_EQ(s.tflops, 1e9 * s.tps / 1e12);
  EXPECT_DOUBLE_EQ(s.mfu, 100 * 1e9 * s.tps / 1e12);
  EXPECT_GT(s.memory_gib, 0);  // this process's VmHWM
  EXPECT_NEAR(s.memory_pct, 100 * s.memory_gib / 16, 1e-9);

  const std::string text = out.str();
  EXPECT_NE(text.find("Peak FLOPS used for computing MFU: 1.000e+12\n"), std::string::npos);
  EXPECT_NE(text.find("Trainer is initialized with local batch size 2, global batch size 4, gradient accumulation "
                      "steps 2, sequence length 8, total steps 20 (warmup 3)\n"),
            std::string::npos);
  EXPECT_NE(text.find("16.00GiB memory budget (from PARTUNE_DEVICE_MEMORY_GIB)"), std::string::npos);
  EXPECT_NE(text.find("Startup: 3.46 s to the first step, host peak RSS 1.25 GiB\n"), std::string::npos);
  EXPECT_NE(text.find("step:  1  loss:  2.50000  grad_norm:  0.7500  memory: "), std::string::npos);

  auto lines = read_jsonl(dir.path() / "metrics-rank0.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  const auto& init = lines[0];
  EXPECT_EQ(init["type"], "init");
  EXPECT_EQ(init["local_batch_size"], 2);
  EXPECT_EQ(init["global_batch_size"], 4);
  EXPECT_EQ(init["gradient_accumulation_steps"], 2);
  EXPECT_EQ(init["gradient_accumulation_steps"], 2);
  EXPECT_EQ(init["seq_len"], 8);
  EXPECT_EQ(init["steps"], 20);
  EXPECT_EQ(init["startup_s"], 3.456);
  EXPECT_EQ(init["host_peak_rss_gib"], 1.25);
  EXPECT_EQ(init["warmup_steps"], 3);
  EXPECT_EQ(init["params"], 100);
  EXPECT_EQ(init["active_params"], 50);
  EXPECT_EQ(init["flops_per_token"], 1e9);
  EXPECT_EQ(init["peak_flops"], 1e12);
  EXPECT_EQ(init["device"], memory.device_name());
  EXPECT_EQ(init["world_size"], 1);
  EXPECT_EQ(init["rank"], 0);
  const auto& step = lines[1];
  EXPECT_EQ(step["type"], "step");
  EXPECT_EQ(step["rank"], 0);
  EXPECT_EQ(step["step"], 1);
  EXPECT_EQ(step["loss"], 2.5);
  EXPECT_EQ(step["grad_norm"], 0.75);
  EXPECT_EQ(step["tps"], s.tps);
  EXPECT_EQ(step["tflops"], s.tflops);
  EXPECT_EQ(step["mfu"], s.mfu);
  EXPECT_EQ(step["memory_gib"], s.memory_gib);
  EXPECT_EQ(step["memory_pct"], s.memory_pct);
  EXPECT_EQ(step["alloc_retries"], 0);
  EXPECT_EQ(step["oom_errors"], 0);

  file.error("oom", "CUDA out of memory. Tried to allocate 2.00 GiB");
  lines = read_jsonl(dir.path() / "metrics-rank0.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(
      lines[2],
      nlohmann::json::parse(
          R"({"type":"error","failure":"oom","rank":0,"message":"CUDA out of memory. Tried to allocate 2.00 GiB"})"));
}

TEST(AppMetrics, NoDirectoryWritesNothing) {
  MetricsFile f(std::nullopt, 3);
  EXPECT_FALSE(f.enabled());
  EXPECT_NO_THROW(f.write({{"type", "step"}}));
}

}  // namespace
}  // namespace partune::trainer
