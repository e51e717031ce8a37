// Step lines that must never become a stored, ranked measurement: NaN,
// infinite, negative or impossible throughput and memory, a step number past
// int64; and the bounds on what one trial's output may make the parser keep.
#include <gtest/gtest.h>

#include <string>

#include "tuner/parse/log_parser.h"
#include "tuner/parse/step_check.h"

namespace partune {
namespace {

using Kind = ParsedLine::Kind;

const std::string kGood = "step: 7  loss:  2.50000  memory: 10.00GiB(12.50%)  tps: 1,000  tflops: 100.00  mfu: 10.00%";

std::string with(const std::string& field, const std::string& value) {
  std::string line = kGood;
  size_t at = line.find(field + ": ") + field.size() + 2;
  size_t end = line.find("  ", at);
  return line.replace(at, end == std::string::npos ? std::string::npos : end - at, value);
}

TEST(HostileStepLine, GoodLineIsAStep) {
  auto p = parse_log_line(kGood);
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_FALSE(p.refused_step);
}

TEST(HostileStepLine, NonFiniteNegativeAndAbsurdValuesAreRefused) {
  struct Case {
    std::string field, value, why;
  };
  const Case cases[] = {
      {"mfu", "nan%", "mfu nan is not a number"},
      {"mfu", "-nan%", "is not a number"},
      {"mfu", "inf%", "mfu inf is infinite"},
      {"mfu", "-5.00%", "mfu -5 is negative"},
      {"mfu", "25000.00%", "mfu 25000 is over 10000"},
      {"mfu", "1e999%", "mfu inf is infinite"},  // out of double's range: infinite, not dropped
      {"tps", "NaN", "tps nan is not a number"},
      {"tps", "-1,000", "tps -1000 is negative"},
      {"tps", "99,999,999,999", "is over 1e+09"},
      {"tflops", "-inf", "tflops -inf is infinite"},
      {"tflops", "1e7", "is over 100000"},
      {"memory", "nanGiB(12.50%)", "memory nan is not a number"},
      {"memory", "-3.00GiB(12.50%)", "memory -3 is negative"},
      {"memory", "1e9GiB(12.50%)", "memory 1e+09 is over"},
      {"memory", "10.00GiB(-1.00%)", "memory % -1 is negative"},
      {"memory", "10.00GiB(inf%)", "memory % inf is infinite"},
      {"memory", "10.00GiB(400.00%)", "memory % 400 is over 100"},
      {"step", "-3", "step -3 is negative"},
      {"step", "99999999999999999999", "overflows a 64-bit integer"},
      {"step", "9223372036854775808", "overflows a 64-bit integer"},
      {"step", "9007199254740993", "is over 2^53"},
  };
  for (const auto& c : cases) {
    const std::string line = with(c.field, c.value);
    auto p = parse_log_line(line);
    EXPECT_EQ(p.kind, Kind::Failure) << line;
    EXPECT_TRUE(p.refused_step) << line;
    EXPECT_EQ(p.failure, FailureClass::Error) << line;
    EXPECT_NE(p.message.find(c.why), std::string::npos) << line << " -> " << p.message;
    EXPECT_NE(p.message.find(line), std::string::npos) << "the message quotes the line: " << p.message;
  }
}

// Hex and malformed numbers fail the line as the other bad values do: "0x10%"
// and "0x1p4%" were read as mfu 0 (the "0"), a done and healthy trial.
TEST(HostileStepLine, HexAndMalformedNumbersAreRefused) {
  struct Case {
    std::string field, value;
  };
  const Case cases[] = {
      {"mfu", "0x10%"},
      {"mfu", "0x1p4%"},
      {"mfu", "1.2.3%"},
      {"mfu", "10.00%%"},
      {"mfu", "ten%"},
      {"tps", "0x3e8"},
      {"tps", "1,000abc"},
      {"tflops", "100.00x"},
      {"loss", "2.5e"},
      {"memory", "0x10GiB(12.50%)"},
      {"memory", "10.00MiB(12.50%)"},
      {"memory", "10.00GiB(0x10%)"},
      {"memory", "10.00GiB(12.50%)x"},
  };
  for (const auto& c : cases) {
    const std::string line = with(c.field, c.value);
    auto p = parse_log_line(line);
    EXPECT_EQ(p.kind, Kind::Failure) << line;
    EXPECT_TRUE(p.refused_step) << line;
    EXPECT_NE(p.message.find(c.field + " '" + c.value + "' is not a decimal number"), std::string::npos)
        << line << " -> " << p.message;
  }
  // Through a whole trial's state: refused, no row, the trial fails.
  TrialLogState st;
  st.feed(with("mfu", "0x10%"));
  EXPECT_TRUE(st.steps().empty());
  EXPECT_EQ(st.failure(), FailureClass::Error);
}

TEST(HostileStepLine, MfuOverAHundredPercentIsTorchtitansFallbackPeakNotAbsurd) {
  EXPECT_EQ(parse_log_line(with("mfu", "720.00%")).kind, Kind::Step);
}

TEST(HostileStepLine, LargestStepNumberIsAStep) {
  auto p = parse_log_line(with("step", "9007199254740992"));
  ASSERT_EQ(p.kind, Kind::Step);
  EXPECT_EQ(p.step.step, int64_t{1} << 53);
}

TEST(HostileStepLine, NanLossIsStillAMeasurement) {
  // A diverged run prints "loss: nan"; its throughput is still real.
  auto p = parse_log_line(with("loss", "nan"));
  EXPECT_EQ(p.kind, Kind::Step);
}

TEST(HostileStepLine, TrialFailsNamingTheLineAndKeepsNoRow) {
  TrialLogState st;
  st.feed("[titan] starting");
  st.feed(with("step", "1"));
  st.feed("[rank0]:" + with("mfu", "-40.00%"));  // line 3
  st.feed(with("step", "3"));
  EXPECT_EQ(st.failure(), FailureClass::Error);
  EXPECT_EQ(st.failure_message().rfind("output line 3: refused step line (mfu -40 is negative): step: 7", 0), 0u)
      << st.failure_message();
  ASSERT_EQ(st.steps().size(), 2u);  // steps 1 and 3; the refused step 7 is not a row
  EXPECT_EQ(st.steps()[0].step, 1);
  EXPECT_EQ(st.steps()[1].step, 3);
  EXPECT_EQ(classify_exit(0, 0, false, false, st), FailureClass::Error);  // a clean exit does not save it
}

TEST(HostileStepLine, RefusedMetricsRecordFailsTheTrial) {
  TrialLogState st;
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"step","step":1,"mfu":12.5,"tps":100})", "metrics-rank0.jsonl line 1"));
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"step","step":2,"mfu":-1e300,"tps":100})", "metrics-rank0.jsonl line 2"));
  EXPECT_EQ(st.failure(), FailureClass::Error);
  EXPECT_EQ(st.failure_message(), "metrics-rank0.jsonl line 2: refused step (mfu -1e+300 is negative)");
  EXPECT_EQ(st.steps().size(), 1u);
}

TEST(HostileStepLine, HugeRankPrefixIsNotARank) {
  auto p = parse_log_line("[rank99999999999]:" + kGood);
  EXPECT_EQ(p.rank, -1);  // not wrapped into a negative or small rank
  auto q = parse_log_line("99999999999999999999: " + kGood);
  EXPECT_EQ(q.rank, -1);
}

TEST(OutputVolume, StepRowsAreBounded) {
  TrialLogState st;
  const int64_t n = static_cast<int64_t>(TrialLogState::kMaxStepRows) + 5000;
  for (int64_t i = 1; i <= n; ++i) st.feed(with("step", std::to_string(i)));
  EXPECT_EQ(st.steps().size(), TrialLogState::kMaxStepRows);
  EXPECT_EQ(st.dropped_step_rows(), 5000);
  EXPECT_EQ(st.steps().back().step, static_cast<int64_t>(TrialLogState::kMaxStepRows));
  EXPECT_EQ(st.lines(), n);
}

TEST(OutputVolume, PerRankCountsAreBounded) {
  TrialLogState st;
  const int n = static_cast<int>(TrialLogState::kMaxRanks) + 100;
  for (int r = 0; r < n; ++r) st.feed("[rank" + std::to_string(r) + "]:1 CUDA memory allocation retries.");
  EXPECT_EQ(st.alloc_retries(), static_cast<int64_t>(TrialLogState::kMaxRanks));
}

TEST(OutputVolume, RowsFromNonZeroRanksOnlyAreKept) {
  TrialLogState st;
  st.feed("[rank3]:" + with("step", "1"));
  st.feed("[rank2]:" + with("step", "1"));
  st.feed("[rank3]:" + with("step", "2"));
  ASSERT_EQ(st.steps().size(), 2u);
  EXPECT_EQ(st.summarize(0).counted_steps, 2);
}

}  // namespace
}  // namespace partune
