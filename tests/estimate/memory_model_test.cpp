// The model's contract: the pruning rule and its reason, capacity, the
// backends, and that observations change predictions.
#include "tuner/estimate/memory_model.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/estimate/measured_memory.h"
#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {
namespace {

Space space(const std::string& backend, const std::string& flavor, const std::string& extra = "") {
  return load_space_from_string("[study]\nname = \"m\"\n[hardware]\ndevice_type = \"cuda\"\ndevices = 1\n" + extra +
                                    "[backend]\nkind = \"" + backend + "\"\n" +
                                    (backend == "command" ? "argv = [\"x\"]\n" : "") +
                                    "[base]\nconfig_file = \"examples/qwen3_30b_a3b.toml\"\n[base.model]\nflavor = \"" +
                                    flavor + "\"\n[space]\n\"training.local_batch_size\" = [1, 2]\n",
                                std::string(PARTUNE_SOURCE_DIR) + "/space.toml");
}

TEST(MemoryModel, PruneReasonNamesThePredictionAndTheLimit) {
  MemoryPrediction over{151.2, 3.0, {}, true, true, "8 layers, eager, TP 1, EP 1"};
  EXPECT_FALSE(predicted_to_fit(over, 139.8, 0.9));
  EXPECT_EQ(prediction_prune_reason(over, 139.8, 0.9), "predicted 151.2 GiB > 90% of 139.8 GiB");
  MemoryPrediction margin{120.0, 4.0,  {},
                          true,  true, "8 layers, eager, TP 1, EP 1"};  // 120 < 125.8, but 120 + 2 x 4 is not
  EXPECT_FALSE(predicted_to_fit(margin, 139.8, 0.9));
  EXPECT_EQ(prediction_prune_reason(margin, 139.8, 0.9), "predicted 120.0 GiB + 2 x 4.0 GiB margin > 90% of 139.8 GiB");
  EXPECT_TRUE(predicted_to_fit(margin, 139.8, 0.9, 1.0));
  EXPECT_EQ(prediction_prune_reason(margin, 139.8, 0.9, 1.0), "");
  EXPECT_EQ(prediction_prune_reason(over, 139.8, 0.925), "predicted 151.2 GiB > 92.5% of 139.8 GiB");
  // A prediction no trial has checked in its regime prunes on its point
  // estimate alone, and says so.
  MemoryPrediction unchecked = margin;
  unchecked.verified = false;
  EXPECT_TRUE(predicted_to_fit(unchecked, 139.8, 0.9));
  unchecked.memory_gib = 130.0;
  EXPECT_EQ(prediction_prune_reason(unchecked, 139.8, 0.9),
            "predicted 130.0 GiB > 90% of 139.8 GiB (unverified: no trial of this study has run at 8 layers, eager, "
            "TP 1, EP 1 yet)");
  MemoryPrediction unknown{500.0, 0.0, {}, false, false, ""};
  EXPECT_TRUE(predicted_to_fit(unknown, 139.8, 0.9));
  EXPECT_EQ(prediction_prune_reason(unknown, 139.8, 0.9), "");
}

TEST(MemoryModel, CapacityFromTheSpaceOrFromAMeasuredTrial) {
  EXPECT_FALSE(device_memory_gib(space("embedded", "30B-A3B-L4")));
  EXPECT_DOUBLE_EQ(*device_memory_gib(space("embedded", "30B-A3B-L4", "memory_gib = 80.0\n")), 80.0);
  TrialMetrics m;
  EXPECT_FALSE(device_memory_from_trial(m));
  m.memory_gib = 80.9;
  m.memory_pct = 57.87;
  EXPECT_NEAR(*device_memory_from_trial(m), 139.8, 0.01);
  m.memory_pct = 0.0;
  EXPECT_FALSE(device_memory_from_trial(m));
}

TEST(MemoryModel, EmbeddedNeedsAFlavorFromTheTable) {
  try {
    make_memory_model(space("embedded", "31B-X"));
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("model.flavor '31B-X'"), std::string::npos) << e.what();
  }
  // Another backend runs what it runs: no shapes, no opinion.
  auto model = make_memory_model(space("command", "31B-X"));
  JobConfig c = space("command", "31B-X").base;
  const auto p = model->predict(c);
  EXPECT_FALSE(p.known);
  EXPECT_TRUE(predicted_to_fit(p, 80, 0.9));
  model->observe(c, 30.0);
  EXPECT_EQ(model->observations(), 1);
}

TEST(MemoryModel, ObservationsMovePredictionsAndPredictIsPure) {
  testing::MemoryMeasurement row;
  row.flavor = "30B-A3B-L4";
  row.lbs = 4;
  row.ac = "2";
  const JobConfig c = testing::config_of(row);
  auto model = make_memory_model(space("embedded", "30B-A3B-L4"));
  const auto before = model->predict(c);
  EXPECT_DOUBLE_EQ(model->predict(c).memory_gib, before.memory_gib);
  EXPECT_NEAR(before.memory_gib, before.terms.total(), 1e-9);
  model->observe(c, before.memory_gib * 1.1);
  const auto after = model->predict(c);
  EXPECT_GT(after.memory_gib, before.memory_gib);
  EXPECT_LT(after.sigma_gib, before.sigma_gib);
  EXPECT_EQ(model->observations(), 1);
}

// Loss parallel: torchtitan shards the logits over TP in both modes unless
// parallelism.disable_loss_parallel; the embedded trainer in the compiled
// mode only (its fused loss combines the vocabulary slices).
TEST(MemoryModel, LossParallelWhereTheBackendShardsTheLogits) {
  JobConfig c;
  c.set("model.name", std::string("qwen3"));
  c.set("model.flavor", std::string("30B-A3B-L4"));
  c.set("training.local_batch_size", int64_t{2});
  c.set("training.seq_len", int64_t{4096});
  c.set("training.mixed_precision_param", std::string("bfloat16"));
  c.set("parallelism.data_parallel_shard_degree", int64_t{1});
  auto logits = [&](const std::string& backend, int64_t tp, bool compile, bool disable) {
    JobConfig j = c;
    j.set("parallelism.tensor_parallel_degree", tp);
    j.set("compile.enable", compile);
    j.set("parallelism.disable_loss_parallel", disable);
    Space s = space(backend, "30B-A3B-L4", "");
    s.hardware.devices = static_cast<int>(tp);
    return make_memory_model(s)->predict(j).terms.logits;
  };
  for (bool compile : {false, true}) {
    const double one = logits("torchtitan", 1, compile, false);
    EXPECT_NEAR(logits("torchtitan", 4, compile, false), one / 4, 0.01 * one) << compile;
    EXPECT_DOUBLE_EQ(logits("torchtitan", 4, compile, true), one) << compile;
  }
  const double eager = logits("embedded", 1, false, false);
  EXPECT_DOUBLE_EQ(logits("embedded", 4, false, false), eager);  // the eager composition replicates them
  const double fused = logits("embedded", 1, true, false);
  EXPECT_LT(logits("embedded", 4, true, false), 0.3 * fused);
  EXPECT_DOUBLE_EQ(logits("embedded", 4, true, true), fused);
}

TEST(MemoryModel, APredictionIsVerifiedOnceATrialOfItsRegimeWasMeasured) {
  testing::MemoryMeasurement row;
  row.flavor = "30B-A3B-L4";
  row.lbs = 1;
  row.ac = "op";
  row.compile = true;
  auto model = make_memory_model(space("embedded", "30B-A3B-L4"));
  const JobConfig small = testing::config_of(row);
  row.lbs = 8;
  const JobConfig large = testing::config_of(row);
  row.compile = false;
  const JobConfig eager = testing::config_of(row);
  EXPECT_EQ(model->predict(large).regime, "4 layers, compiled, TP 1, EP 1");
  EXPECT_FALSE(model->predict(large).verified);
  model->observe(small, model->predict(small).memory_gib);
  EXPECT_TRUE(model->predict(large).verified);   // the same depth, memory mode and layout
  EXPECT_FALSE(model->predict(eager).verified);  // the other memory mode was never measured
  EXPECT_EQ(memory_regime(eager, 1), "4 layers, eager, TP 1, EP 1");
}

TEST(MemoryModel, TermsThatDoNotDescribeTheBackendStopPruning) {
  // A command backend whose memory has nothing to do with the flavor's
  // shapes (like the CPU fixture's made-up model: GiB for a flavor of a few
  // thousand parameters): once the bounded fit
  // misses by more than kUnreliableResidual, predictions are unknown.
  auto model = make_memory_model(space("command", "tiny_moe"));
  JobConfig c = space("command", "tiny_moe").base;
  EXPECT_TRUE(model->predict(c).known);
  for (int64_t lbs : {1, 2, 4}) {
    c.set("training.local_batch_size", lbs);
    model->observe(c, 8.0 + double(lbs));
  }
  EXPECT_FALSE(model->predict(c).known);
  EXPECT_TRUE(predicted_to_fit(model->predict(c), 10.0, 0.9));
}

}  // namespace
}  // namespace partune
