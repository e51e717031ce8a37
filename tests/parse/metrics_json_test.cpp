// The embedded trainer's JSON-lines metrics file, fed into TrialLogState.
#include <gtest/gtest.h>

#include "tuner/parse/log_parser.h"

namespace partune {
namespace {

// The embedded trainer's start-up time and host memory ride on the init
// record; absent (older trainers, other ranks' records) they stay -1.
TEST(MetricsJson, InitCarriesStartupAndHostMemory) {
  TrialLogState st;
  EXPECT_TRUE(st.feed_metrics_json(
      R"({"type":"init","rank":0,"local_batch_size":2,"startup_s":8.25,"host_peak_rss_gib":2.5})"));
  EXPECT_DOUBLE_EQ(st.init().startup_s, 8.25);
  EXPECT_DOUBLE_EQ(st.init().host_peak_rss_gib, 2.5);
  TrialLogState old;
  EXPECT_TRUE(old.feed_metrics_json(R"({"type":"init","rank":0,"local_batch_size":2})"));
  EXPECT_EQ(old.init().startup_s, -1);
  EXPECT_EQ(old.init().host_peak_rss_gib, -1);
}

TEST(MetricsJson, StepInitEventError) {
  TrialLogState st;
  EXPECT_TRUE(st.feed_metrics_json(
      R"({"type":"init","rank":0,"local_batch_size":2,"global_batch_size":4,"gradient_accumulation_steps":1,)"
      R"("seq_len":256,"steps":10,"warmup_steps":2,"peak_flops":1.5e12})"));
  EXPECT_TRUE(st.feed_metrics_json(
      R"({"type":"step","rank":0,"step":1,"loss":10.5,"grad_norm":3.0,"memory_gib":1.5,"memory_pct":10.0,)"
      R"("tps":1000,"tflops":0.5,"mfu":5.0,"alloc_retries":0,"oom_errors":0})"));
  EXPECT_TRUE(st.feed_metrics_json(
      R"({"type":"step","rank":1,"step":1,"loss":10.5,"memory_gib":2.5,"memory_pct":16.0,"tps":999,"mfu":4.0,"alloc_retries":3})"));
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"step","rank":0,"step":2,"mfu":7.0,"tps":1400,"tflops":0.7})"));
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"step","rank":0,"step":3,"mfu":6.0,"tps":1200,"tflops":0.6})"));
  EXPECT_TRUE(st.feed_metrics_json(
      R"({"type":"event","name":"alloc_retries","count":2,"rank":1,"message":"2 CPU memory allocation retries."})"));
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"event","name":"oom_errors","count":1,"rank":2})"));
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"error","failure":"nccl","rank":1,"message":"gloo: connection reset"})"));
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"error","failure":"oom","rank":2,"message":"out of memory"})"));

  EXPECT_EQ(st.malformed_metrics_lines(), 0);
  ASSERT_TRUE(st.has_init());
  EXPECT_EQ(st.init().lbs, 2);
  EXPECT_EQ(st.init().grad_accum, 1);
  EXPECT_EQ(st.init().warmup, 2);
  EXPECT_DOUBLE_EQ(st.peak_flops(), 1.5e12);

  auto rows = st.steps();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_DOUBLE_EQ(*rows[0].mfu, 5.0);         // rank 0's row
  EXPECT_DOUBLE_EQ(*rows[0].memory_gib, 2.5);  // rank 1's higher memory
  EXPECT_DOUBLE_EQ(*rows[0].memory_pct, 16.0);
  EXPECT_FALSE(rows[1].loss.has_value());

  EXPECT_EQ(st.alloc_retries(), 3);  // rank 1: max(3, 2)
  EXPECT_EQ(st.oom_errors(), 1);
  EXPECT_EQ(st.failure(), FailureClass::Oom);
  EXPECT_EQ(st.failure_message(), "out of memory");
  EXPECT_EQ(st.failure_rank(), 2);

  auto m = st.summarize(1);
  EXPECT_EQ(m.counted_steps, 2);
  EXPECT_DOUBLE_EQ(*m.mfu, 6.5);
  EXPECT_DOUBLE_EQ(*m.memory_gib, 2.5);
  EXPECT_EQ(m.alloc_retries, 3);
}

TEST(MetricsJson, MalformedLinesAreCountedAndSkipped) {
  TrialLogState st;
  const char* bad[] = {
      "{not json",
      "[1, 2, 3]",
      "42",
      R"({"step":1})",                                   // no type
      R"({"type":7})",                                   // type not a string
      R"({"type":"step","rank":0})",                     // step without step number
      R"({"type":"step","step":"one"})",                 // step number not an integer
      R"({"type":"step","step":1,"rank":"zero"})",       // rank not an integer
      R"({"type":"error","failure":"gremlins"})",        // unknown failure class
      R"({"type":"error","failure":""})",                // None is not a failure
      R"({"type":"event","name":"alloc_retries"})",      // no count
      R"({"type":"event","name":"weather","count":1})",  // unknown event
      R"({"type":"mystery"})",                           // unknown type
      "{\"type\":\"step\",\"step\":1,\"mfu\":5.0",       // truncated (killed mid-write)
      "\xff\xfe garbage",
  };
  for (const char* line : bad) EXPECT_FALSE(st.feed_metrics_json(line)) << line;
  EXPECT_EQ(st.malformed_metrics_lines(), static_cast<int64_t>(std::size(bad)));
  EXPECT_TRUE(st.feed_metrics_json(""));
  EXPECT_TRUE(st.feed_metrics_json("   "));
  EXPECT_EQ(st.malformed_metrics_lines(), static_cast<int64_t>(std::size(bad)));
  EXPECT_TRUE(st.steps().empty());
  EXPECT_EQ(st.failure(), FailureClass::None);
  EXPECT_TRUE(st.feed_metrics_json(R"({"type":"step","step":1,"mfu":5.0})"));
  EXPECT_EQ(st.steps().size(), 1u);
}

TEST(MetricsJson, MixesWithLogLines) {
  TrialLogState st;
  st.feed("step:  1  loss: 9.0  memory: 5.00GiB(6.00%)  tps: 100  tflops: 1.00  mfu: 1.00%");
  st.feed_metrics_json(R"({"type":"step","rank":2,"step":1,"memory_gib":6.0,"memory_pct":7.5})");
  ASSERT_EQ(st.steps().size(), 1u);
  EXPECT_DOUBLE_EQ(*st.steps()[0].mfu, 1.0);
  EXPECT_DOUBLE_EQ(*st.steps()[0].memory_gib, 6.0);
}

}  // namespace
}  // namespace partune
