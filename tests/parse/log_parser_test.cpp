// The Parser on every log-line form (tests/fixtures/logs: one corpus file per
// form) and the summary rules.
#include "tuner/parse/log_parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace partune {
namespace {

using Kind = ParsedLine::Kind;

TrialLogState feed_file(const std::string& name) {
  std::ifstream in(std::string(PARTUNE_FIXTURES_DIR) + "/logs/" + name);
  EXPECT_TRUE(in) << name;
  TrialLogState st;
  std::string line;
  while (std::getline(in, line)) st.feed(line);
  return st;
}

// --- single lines ----------------------------------------------------------

TEST(ParseLine, PlainStepLine) {
  auto p = parse_log_line(
      "step: 40  loss:  7.12345  grad_norm:  1.2034  memory: 71.50GiB(51.17%)  tps: 12,345  tflops: 345.67  mfu: "
      "34.95%");
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_EQ(p.rank, -1);
  EXPECT_EQ(p.step.step, 40);
  EXPECT_DOUBLE_EQ(*p.step.loss, 7.12345);
  EXPECT_DOUBLE_EQ(*p.step.grad_norm, 1.2034);
  EXPECT_DOUBLE_EQ(*p.step.memory_gib, 71.50);
  EXPECT_DOUBLE_EQ(*p.step.memory_pct, 51.17);
  EXPECT_DOUBLE_EQ(*p.step.tps, 12345);
  EXPECT_DOUBLE_EQ(*p.step.tflops, 345.67);
  EXPECT_DOUBLE_EQ(*p.step.mfu, 34.95);
}

TEST(ParseLine, ColouredRankPrefixedTitanPrefixed) {
  auto p = parse_log_line(
      "[rank5]:[titan] 2025-12-14 05:55:38,070 - root - INFO - \x1b[31mstep:  1  \x1b[32mloss: 12.25341  "
      "\x1b[38;2;180;60;0mgrad_norm:  9.8765  \x1b[38;2;54;234;195mmemory:  9.50GiB(6.80%)  \x1b[34mtps: 1,234  "
      "\x1b[36mtflops: 1,034.44  \x1b[35mmfu: 3.48%\x1b[39m\r");
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_EQ(p.rank, 5);
  EXPECT_EQ(p.step.step, 1);
  EXPECT_DOUBLE_EQ(*p.step.loss, 12.25341);
  EXPECT_DOUBLE_EQ(*p.step.memory_gib, 9.5);
  EXPECT_DOUBLE_EQ(*p.step.tps, 1234);
  EXPECT_DOUBLE_EQ(*p.step.tflops, 1034.44);
  EXPECT_DOUBLE_EQ(*p.step.mfu, 3.48);
  EXPECT_EQ(p.message.find('\x1b'), std::string::npos);
}

TEST(ParseLine, FourDecimalLossWithoutGradNorm) {
  auto p = parse_log_line("step: 10  loss:  9.1234  memory: 52.75GiB(66.64%)  tps: 812  tflops: 25.01  mfu: 8.02%");
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_DOUBLE_EQ(*p.step.loss, 9.1234);
  EXPECT_FALSE(p.step.grad_norm.has_value());
}

TEST(ParseLine, OldWpsFieldIsTps) {
  auto p = parse_log_line("step:  5  loss:  8.1234  memory: 10.00GiB(12.50%)  wps: 2,048  mfu: 11.00%");
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_DOUBLE_EQ(*p.step.tps, 2048);
  EXPECT_FALSE(p.step.tflops.has_value());
}

TEST(ParseLine, NanLoss) {
  auto p = parse_log_line(
      "step: 3  loss:      nan  grad_norm:     nan  memory:  1.00GiB(1.00%)  tps: 10  tflops: 0.01  mfu: 0.10%");
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_TRUE(std::isnan(*p.step.loss));
  EXPECT_DOUBLE_EQ(*p.step.mfu, 0.10);
}

TEST(ParseLine, SrunAndDefaultRolePrefixes) {
  EXPECT_EQ(parse_log_line("3: step: 1  loss: 1.0").rank, 3);
  EXPECT_EQ(parse_log_line("[default2]:step: 1  loss: 1.0").rank, 2);
  EXPECT_EQ(parse_log_line("[default2]:step: 1  loss: 1.0").kind, Kind::Step);
}

TEST(ParseLine, ValidateStepIsNotATrainingStep) {
  EXPECT_EQ(parse_log_line("\x1b[33mvalidate step: 10  \x1b[32mloss:  7.0000  \x1b[34mtps: 999\x1b[39m").kind,
            Kind::Other);
}

TEST(ParseLine, StepWithoutMetricsIsOther) {
  EXPECT_EQ(parse_log_line("step: 5 of 10").kind, Kind::Other);
  EXPECT_EQ(parse_log_line("step:").kind, Kind::Other);
}

TEST(ParseLine, AllocRetriesWarning) {
  auto p =
      parse_log_line("[rank1]:[titan] 2025-12-14 05:55:38,070 - root - WARNING - 12 CUDA memory allocation retries.");
  ASSERT_EQ(p.kind, Kind::AllocRetries);
  EXPECT_EQ(p.count, 12);
  EXPECT_EQ(p.rank, 1);
}

TEST(ParseLine, OomErrorsLine) {
  auto p = parse_log_line("2 CUDA OOM errors thrown.");
  ASSERT_EQ(p.kind, Kind::OomErrors);
  EXPECT_EQ(p.count, 2);
}

TEST(ParseLine, TrainerInitialized) {
  auto p = parse_log_line(
      "[titan] 2025-12-14 05:55:38,070 - root - INFO - Trainer is initialized with local batch size 4, global batch "
      "size 32, gradient accumulation steps 2, sequence length 12288, total steps 20 (warmup 3)");
  ASSERT_EQ(p.kind, Kind::TrainerInit);
  EXPECT_EQ(p.init.lbs, 4);
  EXPECT_EQ(p.init.gbs, 32);
  EXPECT_EQ(p.init.grad_accum, 2);
  EXPECT_EQ(p.init.seq_len, 12288);
  EXPECT_EQ(p.init.steps, 20);
  EXPECT_EQ(p.init.warmup, 3);
}

TEST(ParseLine, OlderTrainingStartsLineHasNoGradAccum) {
  auto p = parse_log_line(
      "Training starts at step 1, with local batch size 8, global batch size 64, sequence length 8192, total steps "
      "30 (warmup 5)");
  ASSERT_EQ(p.kind, Kind::TrainerInit);
  EXPECT_EQ(p.init.lbs, 8);
  EXPECT_EQ(p.init.grad_accum, -1);
  EXPECT_EQ(p.init.warmup, 5);
}

TEST(ParseLine, PeakFlops) {
  auto p = parse_log_line(
      "[rank0]:[titan] 2025-12-14 05:55:38,070 - root - INFO - Peak FLOPS used for computing MFU: 9.890e+14");
  ASSERT_EQ(p.kind, Kind::PeakFlops);
  EXPECT_DOUBLE_EQ(p.peak_flops, 9.89e14);
}

// One row per failure marker: the line, the class it must get.
struct FailureCase {
  const char* line;
  FailureClass expected;
};

TEST(ParseLine, EveryFailureMarker) {
  const FailureCase cases[] = {
      {"[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.", FailureClass::Oom},
      {"torch.cuda.OutOfMemoryError: CUDA out of memory.", FailureClass::Oom},
      {"RuntimeError: CUDA error: out of memory", FailureClass::Oom},
      {"RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
       "to allocate 1 bytes.",
       FailureClass::Oom},
      {"torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:3356, unhandled system error",
       FailureClass::Nccl},
      {"RuntimeError: ncclInternalError: Internal check failed.", FailureClass::Nccl},
      {"[E ProcessGroupNCCL.cpp:475] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1)",
       FailureClass::Nccl},
      {"[E ProcessGroupNCCL.cpp:1316] [Rank 0] Heartbeat monitor timed out!", FailureClass::Nccl},
      {"Some NCCL operations have failed or timed out.", FailureClass::Nccl},
      {"Traceback (most recent call last):", FailureClass::Error},
      {"torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ", FailureClass::Crash},
      {"  exitcode  : -9 (pid: 103)", FailureClass::Crash},
      {"failed (exitcode: 1) local_rank: 0 (pid: 4243) of binary: /usr/bin/python3", FailureClass::Error},
      {"  traceback : Signal 9 (SIGKILL) received by PID 103", FailureClass::Crash},
      {"Fatal Python error: Segmentation fault", FailureClass::Crash},
      {"trainer: error: gloo connect timed out", FailureClass::Error},
      {"trainer: error: CUDA out of memory", FailureClass::Oom},
      {"trainer: rank 3 failed: killed by signal 9", FailureClass::Crash},
      {"trainer: rank 3 failed: ncclRemoteError: remote process exited", FailureClass::Nccl},
  };
  for (const auto& c : cases) {
    auto p = parse_log_line(c.line);
    EXPECT_EQ(p.kind, Kind::Failure) << c.line;
    EXPECT_EQ(p.failure, c.expected) << c.line << " -> " << to_string(p.failure);
  }
  EXPECT_EQ(parse_log_line("trainer: rank 3 failed: x").rank, 3);
}

TEST(ParseLine, LinesThatLookLikeFailuresButAreNot) {
  const char* lines[] = {
      "[I ProcessGroupNCCL.cpp:937] ProcessGroupNCCL initialization options: size: 8, TIMEOUT(ms): 600000",
      "[titan] 2025-12-14 05:55:38,070 - root - INFO - CUDA memory usage for model: 7.12GiB(5.10%)",
      "ValueError: not after a traceback on its own",
      "",
      "\x1b[39m",
  };
  for (const char* l : lines) EXPECT_EQ(parse_log_line(l).kind, Kind::Other) << l;
}

// --- corpus files ------------------------------------------------------------

TEST(Corpus, TorchtitanV022Coloured) {
  auto st = feed_file("torchtitan_v022_colored.log");
  auto rows = st.steps();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].step, 10);
  EXPECT_DOUBLE_EQ(*rows[1].mfu, 29.90);
  EXPECT_DOUBLE_EQ(*rows[1].tps, 6260);
  EXPECT_DOUBLE_EQ(*rows[1].loss, 7.12345);
  EXPECT_DOUBLE_EQ(st.peak_flops(), 9.89e14);
  ASSERT_TRUE(st.has_init());
  EXPECT_EQ(st.init().seq_len, 12288);
  EXPECT_EQ(st.failure(), FailureClass::None);
  auto m = st.summarize(2);
  EXPECT_EQ(m.counted_steps, 2);
  EXPECT_DOUBLE_EQ(*m.mfu, (29.90 + 30.15) / 2);
  EXPECT_DOUBLE_EQ(*m.memory_gib, 116.10);
  EXPECT_DOUBLE_EQ(*m.memory_pct, 83.07);
}

TEST(Corpus, PlainFourDecimalsThousands) {
  auto st = feed_file("plain_4_decimals.log");
  auto rows = st.steps();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_DOUBLE_EQ(*rows[1].tps, 12345);
  EXPECT_DOUBLE_EQ(*rows[3].tflops, 1372.75);
  EXPECT_DOUBLE_EQ(*rows[0].loss, 10.877);
  EXPECT_EQ(st.init().steps, 30);
  auto m = st.summarize(5);
  EXPECT_EQ(m.counted_steps, 3);
  EXPECT_DOUBLE_EQ(*m.tps, 12345);  // median of 12345, 12400, 12101
}

TEST(Corpus, RanksMemoryMaxAndRetriesSumOfMaxPerRank) {
  auto st = feed_file("ranks_retries.log");
  auto rows = st.steps();
  ASSERT_EQ(rows.size(), 2u);
  // Step 1: rank 0's values, rank 1's larger memory.
  EXPECT_DOUBLE_EQ(*rows[0].tps, 5000);
  EXPECT_DOUBLE_EQ(*rows[0].memory_gib, 74.5);
  EXPECT_DOUBLE_EQ(*rows[0].memory_pct, 53.3);
  // Step 10: rank 1 higher again.
  EXPECT_DOUBLE_EQ(*rows[1].memory_gib, 72.0);
  EXPECT_DOUBLE_EQ(*rows[1].mfu, 20.4);
  EXPECT_EQ(st.alloc_retries(), 5 + 1);  // rank 1: 2 then 5 (running count); rank 3: 1
  EXPECT_EQ(st.oom_errors(), 1);
  auto m = st.summarize(0);
  EXPECT_EQ(m.alloc_retries, 6);
  EXPECT_EQ(m.oom_errors, 1);
  EXPECT_DOUBLE_EQ(*m.memory_gib, 74.5);
}

struct CorpusFailure {
  const char* file;
  FailureClass expected;
  const char* message_contains;
  int rank;
};

TEST(Corpus, EveryFailureFile) {
  const CorpusFailure cases[] = {
      {"cuda_oom.log", FailureClass::Oom, "torch.OutOfMemoryError: CUDA out of memory", 0},
      {"cuda_error_oom.log", FailureClass::Oom, "CUDA error: out of memory", 2},
      {"nccl_timeout.log", FailureClass::Nccl, "Watchdog caught collective operation timeout", 1},
      {"nccl_error.log", FailureClass::Nccl, "NCCL error in", 0},
      {"nccl_internal.log", FailureClass::Nccl, "ncclInternalError", 3},
      {"nccl_pg_timeout.log", FailureClass::Nccl, "Heartbeat monitor timed out", 0},
      {"python_traceback.log", FailureClass::Error, "ValueError: tensor_parallel_degree 3", -1},
      {"torchrun_sigkill.log", FailureClass::Crash, "exitcode: -9", -1},
      {"signal_received.log", FailureClass::Crash, "Signal 9 (SIGKILL)", -1},
      {"child_failed.log", FailureClass::Crash, "ChildFailedError", -1},
      {"trainer_own.log", FailureClass::Oom, "CUDA out of memory", 1},
  };
  for (const auto& c : cases) {
    auto st = feed_file(c.file);
    EXPECT_EQ(st.failure(), c.expected) << c.file << " -> " << to_string(st.failure());
    EXPECT_NE(st.failure_message().find(c.message_contains), std::string::npos)
        << c.file << ": " << st.failure_message();
    EXPECT_EQ(st.failure_rank(), c.rank) << c.file;
  }
  EXPECT_EQ(feed_file("nccl_init_info.log").failure(), FailureClass::None);
}

TEST(Corpus, OomRowsBeforeTheFailureAreKept) {
  auto st = feed_file("cuda_oom.log");
  ASSERT_EQ(st.steps().size(), 1u);
  EXPECT_DOUBLE_EQ(*st.steps()[0].memory_gib, 130.0);
}

TEST(Corpus, LabelsAndValidateLines) {
  auto st = feed_file("labels_validate.log");
  auto rows = st.steps();
  ASSERT_EQ(rows.size(), 2u);  // step 5 (srun label 3), step 7 (default0); validate line ignored
  EXPECT_EQ(rows[0].step, 5);
  EXPECT_EQ(rows[1].step, 7);
}

TEST(Corpus, MutatedLinesNeverBreakTheParser) {
  // Fuzzing in miniature: every corpus line, truncated at every length and
  // with random bytes overwritten, goes through the parser; a line that still
  // parses as a step has a step number.
  std::mt19937 rng(12345);
  std::vector<std::string> lines;
  for (const auto& e : std::filesystem::directory_iterator(std::string(PARTUNE_FIXTURES_DIR) + "/logs")) {
    std::ifstream in(e.path());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  ASSERT_GT(lines.size(), 50u);
  TrialLogState st;
  int64_t fed = 0;
  for (const auto& l : lines) {
    for (size_t n = 0; n <= l.size(); ++n) {
      st.feed(std::string_view(l).substr(0, n));
      ++fed;
    }
    for (int k = 0; k < 20; ++k) {
      std::string m = l;
      for (int flips = 0; flips < 3 && !m.empty(); ++flips) m[rng() % m.size()] = static_cast<char>(rng() % 256);
      auto p = parse_log_line(m);
      if (p.kind == Kind::Step) {
        EXPECT_FALSE(p.message.empty());
      }
      st.feed(m);
      ++fed;
    }
  }
  EXPECT_EQ(st.lines(), fed);
  (void)st.summarize(0);
}

// --- state rules --------------------------------------------------------------

TEST(TrialLogState, FailurePriorityOomOverNcclOverOthers) {
  TrialLogState st;
  st.feed("Traceback (most recent call last):");
  EXPECT_EQ(st.failure(), FailureClass::Error);
  st.feed("  exitcode  : -9 (pid: 1)");  // a crash after an error: the first 'other' stays
  EXPECT_EQ(st.failure(), FailureClass::Error);
  st.feed("ncclInternalError: x");
  EXPECT_EQ(st.failure(), FailureClass::Nccl);
  st.feed("torch.OutOfMemoryError: CUDA out of memory.");
  EXPECT_EQ(st.failure(), FailureClass::Oom);
  st.feed("NCCL error in: foo");
  st.feed("RuntimeError: CUDA error: out of memory");  // a second OOM keeps the first message
  EXPECT_EQ(st.failure(), FailureClass::Oom);
  EXPECT_EQ(st.failure_message(), "torch.OutOfMemoryError: CUDA out of memory.");
}

TEST(TrialLogState, DuplicateStepKeepsOneRowLastLineWins) {
  TrialLogState st;
  st.feed("step: 1  loss: 2.0  mfu: 10.00%");
  st.feed("step: 1  loss: 1.5  mfu: 11.00%");
  ASSERT_EQ(st.steps().size(), 1u);
  EXPECT_DOUBLE_EQ(*st.steps()[0].mfu, 11.0);
}

TEST(TrialLogState, StepSeenOnlyOnAnotherRankUsesThatRank) {
  TrialLogState st;
  st.feed("[rank3]:step: 4  loss: 2.0  memory: 3.00GiB(1.00%)  mfu: 10.00%");
  st.feed("[rank1]:step: 4  loss: 1.0  memory: 2.00GiB(0.50%)  mfu: 12.00%");
  ASSERT_EQ(st.steps().size(), 1u);
  EXPECT_DOUBLE_EQ(*st.steps()[0].mfu, 12.0);        // lowest rank's values
  EXPECT_DOUBLE_EQ(*st.steps()[0].memory_gib, 3.0);  // highest memory
}

TEST(TrialLogState, DefaultRankForUnprefixedLines) {
  TrialLogState st;
  st.feed("3 CUDA memory allocation retries.", 0);
  st.feed("4 CUDA memory allocation retries.", 1);
  st.feed("2 CUDA memory allocation retries.", 1);
  EXPECT_EQ(st.alloc_retries(), 3 + 4);
}

TEST(Summarize, MediansOverStepsAfterWarmupPeakOverAll) {
  TrialLogState st;
  st.feed("step:  1  loss: 9.0  memory: 50.00GiB(60.00%)  tps: 100  tflops: 1.00  mfu: 1.00%");
  st.feed("step:  2  loss: 8.0  memory: 40.00GiB(50.00%)  tps: 300  tflops: 3.00  mfu: 3.00%");
  st.feed("step:  3  loss: 7.0  memory: 41.00GiB(51.00%)  tps: 200  tflops: 2.00  mfu: 2.00%");
  st.feed("step:  4  loss: 6.0  memory: 42.00GiB(52.00%)  tps: 900  tflops: 9.00  mfu: 9.00%");
  auto m = st.summarize(1);
  EXPECT_EQ(m.counted_steps, 3);
  EXPECT_DOUBLE_EQ(*m.mfu, 3.0);  // median of 3, 2, 9
  EXPECT_DOUBLE_EQ(*m.tps, 300);
  EXPECT_DOUBLE_EQ(*m.tflops, 3.0);
  EXPECT_DOUBLE_EQ(*m.memory_gib, 50.0);  // the warmup step counts for peak memory
  EXPECT_DOUBLE_EQ(*m.memory_pct, 60.0);
  auto even = st.summarize(0);
  EXPECT_DOUBLE_EQ(*even.mfu, 2.5);  // median of 1, 3, 2, 9
}

TEST(Summarize, NoCountedStepsGivesNoMedians) {
  TrialLogState st;
  st.feed("step:  1  loss: 9.0  memory: 50.00GiB(60.00%)  tps: 100  tflops: 1.00  mfu: 1.00%");
  auto m = st.summarize(5);
  EXPECT_EQ(m.counted_steps, 0);
  EXPECT_FALSE(m.mfu.has_value());
  EXPECT_DOUBLE_EQ(*m.memory_gib, 50.0);
}

TEST(ClassifyExit, Order) {
  TrialLogState clean, oom;
  oom.feed("torch.OutOfMemoryError: CUDA out of memory.");
  EXPECT_EQ(classify_exit(0, 0, false, false, clean), FailureClass::None);
  EXPECT_EQ(classify_exit(-1, 9, true, true, oom), FailureClass::Timeout);
  EXPECT_EQ(classify_exit(-1, 9, false, true, oom), FailureClass::Hang);
  EXPECT_EQ(classify_exit(1, 0, false, false, oom), FailureClass::Oom);
  EXPECT_EQ(classify_exit(137, 9, false, false, clean), FailureClass::Crash);
  EXPECT_EQ(classify_exit(134, 0, false, false, clean), FailureClass::Crash);
  EXPECT_EQ(classify_exit(1, 0, false, false, clean), FailureClass::Error);
}

}  // namespace
}  // namespace partune
