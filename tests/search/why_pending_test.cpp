// `tune why` on the candidates a finished guided study left pending: the
// study keeps the sampler's reason in each one's facts (not_run), and the
// explanation (text and JSON, the functions `tune why` calls) says it: the
// layout set aside, the memory prediction, or the throughput model's
// prediction and upper bound against the best.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "sim_study.h"
#include "tuner/report/why.h"

namespace partune {
namespace {

namespace fs = std::filesystem;

TEST(WhyPending, AFinishedGuidedStudySaysWhyEachPendingCandidateWasNotRun) {
  const fs::path dir = fs::temp_directory_path() / ("partune-why-pending-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const sim::SimRun run = sim::run_sim(PARTUNE_SOURCE_DIR, dir.string(), "guided", 1);
  Store store = Store::open((dir / "sim.db").string());
  WhyInput in;
  in.trials = store.trials("sim_guided_1");
  in.objective = "mfu";
  std::map<std::string, int> kinds;
  double best = 0;
  for (const auto& t : in.trials)
    if (t.status == TrialStatus::Done && t.metrics.mfu) best = std::max(best, *t.metrics.mfu);
  for (const auto& t : in.trials) {
    if (t.status != TrialStatus::Pending) continue;
    ASSERT_TRUE(t.facts.contains("not_run")) << t.id;
    const std::string kind = t.facts["not_run"]["kind"];
    ++kinds[kind];
    const WhyTarget target = find_why_target(in, "sim_guided_1", t.id);
    const std::string text = explain_why(in, target);
    EXPECT_EQ(text.rfind(t.id + ": pending: not run: ", 0), 0u) << text;
    const nlohmann::json j = why_json(in, target);
    EXPECT_EQ(j["id"], t.id);
    EXPECT_EQ(j["kind"], "pending");
    EXPECT_EQ(j["not_run"]["kind"], kind);
    if (kind == "model") {
      // The prediction, its upper bound and the best the study ranked.
      const double predicted = j["not_run"]["predicted"], upper = j["not_run"]["upper"];
      EXPECT_GT(upper, predicted) << t.id;
      EXPECT_NEAR(j["not_run"]["best"].get<double>(), best, 0.05 * best) << t.id;
      EXPECT_NE(text.find("the throughput model predicts"), std::string::npos) << text;
      EXPECT_NE(text.find("against the best"), std::string::npos) << text;
    } else if (kind == "layout-set-aside") {
      EXPECT_NE(text.find("set aside: hang at its smallest batch"), std::string::npos) << text;
    } else {
      EXPECT_EQ(kind, "memory");
      EXPECT_NE(text.find("the memory model predicts"), std::string::npos) << text;
    }
  }
  // The hanging layout's members, candidates predicted not to fit, and the
  // rest judged by the model: all three.
  EXPECT_GT(kinds["layout-set-aside"], 0);
  EXPECT_GT(kinds["memory"], 0);
  EXPECT_GT(kinds["model"], 100);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace partune
