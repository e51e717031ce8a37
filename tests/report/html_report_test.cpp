// The HTML report's rules on hand-made trials: outcome classes under a
// health rule, where a trial sits on the memory axis, the per-axis effect
// (held at the best config, else marginal), and that nothing a user typed
// reaches the page unescaped.
#include "tuner/report/html_report.h"

#include <gtest/gtest.h>

#include "tests/store/test_support.h"

namespace partune {
namespace {

const std::string kTp = "parallelism.tensor_parallel_degree";
const std::string kLbs = "training.local_batch_size";

TrialRecord trial(const std::string& id, int64_t tp, int64_t lbs, TrialStatus status, std::optional<double> mfu,
                  std::optional<double> memory_pct) {
  TrialRecord r;
  r.study = "s";
  r.id = id;
  r.status = status;
  r.attempt = status == TrialStatus::Pending ? 0 : 1;
  r.axes = {{kTp, tp}, {kLbs, lbs}};
  r.config = testing::candidate(tp, 1, lbs).config;
  r.metrics.mfu = mfu;
  r.metrics.memory_pct = memory_pct;
  if (memory_pct) r.metrics.memory_gib = *memory_pct * 0.8;
  return r;
}

ReportInput input(std::vector<TrialRecord> trials) {
  ReportInput in;
  in.study.name = "s";
  in.db_path = "s.db";
  in.trials = std::move(trials);
  in.generated_at = "2026-11-29T00:00:00Z";
  return in;
}

TEST(HtmlReport, OutcomeClassFollowsTheStudysRule) {
  const HealthRule rule{0.8, true};
  EXPECT_EQ(outcome_class(trial("a", 1, 1, TrialStatus::Done, 30, 70), rule), "healthy");
  EXPECT_EQ(outcome_class(trial("b", 1, 1, TrialStatus::Done, 30, 85), rule), "over-headroom");
  TrialRecord retries = trial("c", 1, 1, TrialStatus::Done, 30, 70);
  retries.metrics.alloc_retries = 3;
  EXPECT_EQ(outcome_class(retries, rule), "retries");
  EXPECT_EQ(outcome_class(retries, HealthRule{0.8, false}), "healthy");
  TrialRecord oom = trial("d", 1, 1, TrialStatus::Failed, std::nullopt, std::nullopt);
  oom.failure = FailureClass::Oom;
  EXPECT_EQ(outcome_class(oom, rule), "oom");
  TrialRecord hang = trial("e", 1, 1, TrialStatus::Failed, 20, 60);
  hang.failure = FailureClass::Hang;
  EXPECT_EQ(outcome_class(hang, rule), "failed");
  EXPECT_EQ(outcome_class(trial("f", 1, 1, TrialStatus::Pruned, 20, 60), rule), "stopped");
}

TEST(HtmlReport, MemoryAxisIsTheMeasurementElseThePredictionAtLaunch) {
  bool predicted = true;
  EXPECT_EQ(chart_memory_gib(trial("a", 1, 1, TrialStatus::Done, 30, 50), &predicted), 40.0);
  EXPECT_FALSE(predicted);
  TrialRecord oom = trial("b", 1, 1, TrialStatus::Failed, std::nullopt, std::nullopt);
  EXPECT_FALSE(chart_memory_gib(oom));  // nothing known
  oom.facts["prediction"] = {{"memory_gib", 91.5}};
  EXPECT_EQ(chart_memory_gib(oom, &predicted), 91.5);
  EXPECT_TRUE(predicted);
  TrialRecord pending = trial("c", 1, 1, TrialStatus::Pending, std::nullopt, std::nullopt);
  pending.facts["prediction"] = {{"memory_gib", 10.0}};
  EXPECT_FALSE(chart_memory_gib(pending));  // never ran: not a trial of the chart
  TrialRecord pruned_unrun = trial("d", 1, 1, TrialStatus::Pruned, std::nullopt, std::nullopt);
  pruned_unrun.attempt = 0;
  EXPECT_FALSE(chart_memory_gib(pruned_unrun));
}

// The effect of TP: at TP 2 the trial with lbs as the best's (held); at TP 4
// none has the best's lbs, so the best TP-4 trial (marginal).
TEST(HtmlReport, AxisEffectHoldsTheOtherAxesAtTheBestElseMarginal) {
  const std::string html = html_report(input({
      trial("best0001", 1, 2, TrialStatus::Done, 40, 50),
      trial("held0002", 2, 2, TrialStatus::Done, 35, 50),
      trial("other003", 2, 1, TrialStatus::Done, 38, 50),  // faster than held, but lbs differs
      trial("marg0004", 4, 1, TrialStatus::Done, 20, 50),
      trial("marg0005", 4, 4, TrialStatus::Done, 25, 50),
  }));
  const size_t a = html.find("id=\"effect-TP\""), b = html.find("</svg>", a);
  ASSERT_NE(a, std::string::npos);
  const std::string chart = html.substr(a, b - a);
  EXPECT_NE(chart.find("class=\"pt held healthy\" data-trial=\"best0001\""), std::string::npos) << chart;
  EXPECT_NE(chart.find("class=\"pt held healthy\" data-trial=\"held0002\""), std::string::npos) << chart;
  EXPECT_NE(chart.find("class=\"pt marginal healthy\" data-trial=\"marg0005\""), std::string::npos) << chart;
  EXPECT_EQ(chart.find("other003"), std::string::npos);
  EXPECT_EQ(chart.find("marg0004"), std::string::npos);
}

TEST(HtmlReport, ThePageEscapesWhatAUserTyped) {
  ReportInput in = input({trial("a", 1, 1, TrialStatus::Done, 30, 50)});
  in.study.name = "<script>alert(1)</script>";
  in.trials[0].reason = "<img src=x>";
  in.trials[0].status = TrialStatus::Failed;
  const std::string html = html_report(in);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
}

TEST(HtmlReport, ParetoFrontOnlyWithTwoOrMoreHealthyTradeOffs) {
  // Each healthy trial beats the one before on the objective with more memory: a front of 3.
  const std::string front =
      html_report(input({trial("a", 1, 1, TrialStatus::Done, 10, 20), trial("b", 1, 2, TrialStatus::Done, 20, 40),
                         trial("c", 2, 1, TrialStatus::Done, 15, 60), trial("d", 2, 2, TrialStatus::Done, 30, 80)}));
  EXPECT_NE(front.find("Pareto front (healthy)"), std::string::npos);
  // One trial uses the least memory and is the fastest: no trade-off to draw.
  const std::string none =
      html_report(input({trial("a", 1, 1, TrialStatus::Done, 30, 20), trial("b", 1, 2, TrialStatus::Done, 20, 40)}));
  EXPECT_EQ(none.find("Pareto front (healthy)"), std::string::npos);
}

}  // namespace
}  // namespace partune
