// trainer/config: job config -> TrainerConfig, the errors it pins, and the
// numbers --dry-run prints.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "app_testing.h"
#include "common/error.h"
#include "trainer/config/trainer_config.h"
#include "trainer/train/optimizer.h"

namespace partune::trainer {
namespace {

using testing::error_of;
using testing::TempDir;

const char* kBase = R"(
[model]
name = "qwen3"
flavor = "debugmodel_moe"

[training]
local_batch_size = 4
seq_len = 256
steps = 20

[lr_scheduler]
warmup_steps = 5
)";

TEST(AppConfig, CliOverTomlOverDefaults) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  TrainerConfig c = parse_trainer_args({"--job.config_file", f, "--training.seq_len", "128", "--metrics.log_freq=3"});
  EXPECT_EQ(c.config_file, f);
  EXPECT_EQ(c.seq_len, 128);               // CLI over TOML (256)
  EXPECT_EQ(c.local_batch_size, 4);        // TOML over default (8)
  EXPECT_EQ(c.steps, 20);                  // TOML
  EXPECT_EQ(c.log_freq, 3);                // CLI over default (10)
  EXPECT_DOUBLE_EQ(c.max_norm, 1.0);       // default
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 8e-4);  // default
  EXPECT_EQ(c.flavor.name, "debugmodel_moe");
  EXPECT_EQ(c.lr_scheduler.warmup_steps, 5);
  EXPECT_EQ(c.global_batch_size, 4);  // -1 -> lbs * dp (1)
  EXPECT_EQ(c.grad_accum_steps, 1);
  // torchtitan's default AC: selective every 2nd block
  EXPECT_EQ(c.ac.mode, ACMode::Selective);
  EXPECT_EQ(c.ac.every_n, 2);
}

bool has_note(const TrainerConfig& c, const std::string& text) {
  for (const auto& n : c.notes)
    if (n.find(text) != std::string::npos) return true;
  return false;
}

TEST(AppConfig, BooleansAreFlags) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", std::string(kBase) + "[compile]\nenable = true\n");
  EXPECT_TRUE(parse_trainer_args({"--job.config_file", f}).compile_enable);
  TrainerConfig off = parse_trainer_args({"--job.config_file", f, "--compile.no-enable"});
  EXPECT_FALSE(off.compile_enable);
  TrainerConfig on = parse_trainer_args({"--job.config_file", f, "--compile.enable"});
  EXPECT_TRUE(on.compile_enable);
  EXPECT_FALSE(has_note(on, "compile"));             // a real mode now (the compiled memory mode), not an ignored key
  EXPECT_TRUE(on.compile_model && on.compile_loss);  // compile.components defaults to model, loss
  EXPECT_FALSE(off.compile_model || off.compile_loss);
  TrainerConfig model_only =
      parse_trainer_args({"--job.config_file", f, "--compile.enable", "--compile.components", "model"});
  EXPECT_TRUE(model_only.compile_model);
  EXPECT_FALSE(model_only.compile_loss);
  EXPECT_EQ(on.loss_chunk_tokens, 0);  // the chunked loss's default
  EXPECT_EQ(parse_trainer_args({"--job.config_file", f, "--loss-chunk-tokens", "512"}).loss_chunk_tokens, 512);
  EXPECT_EQ(parse_trainer_args({"--job.config_file", f, "--loss-chunk-tokens=7"}).loss_chunk_tokens, 7);
  EXPECT_TRUE(parse_trainer_args({"--job.config_file", f, "--metrics.disable_color_printing"}).disable_color_printing);
}

TEST(AppConfig, GradientAccumulationFromGlobalBatch) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  TrainerConfig c = parse_trainer_args({"--job.config_file", f, "--training.global_batch_size", "16"});
  EXPECT_EQ(c.global_batch_size, 16);
  EXPECT_EQ(c.grad_accum_steps, 4);
  EXPECT_NE(error_of({"--job.config_file", f, "--training.global_batch_size", "6"}).find("6"), std::string::npos);
}

TEST(AppConfig, UnimplementedKeyMessageIsPinned) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", std::string(kBase) + "[checkpoint]\nenable = true\n");
  EXPECT_EQ(error_of({"--job.config_file", f}),
            f + ": key 'checkpoint.enable' = true is not implemented by the embedded trainer; it runs with "
                "checkpoint.enable = false (torchtitan's default)");
  // The same key at its default is fine.
  const std::string g = dir.write("b.toml", std::string(kBase) + "[checkpoint]\nenable = false\n");
  EXPECT_NO_THROW(parse_trainer_args({"--job.config_file", g}));
  // Set on the command line: the message names the command line.
  const std::string h = dir.write("c.toml", kBase);
  EXPECT_EQ(error_of({"--job.config_file", h, "--profiling.enable_memory_snapshot"}),
            "command line: key 'profiling.enable_memory_snapshot' = true is not implemented by the embedded trainer; "
            "it runs with profiling.enable_memory_snapshot = false (torchtitan's default)");
}

// A key of a feature that is off changes nothing torchtitan computes, whatever
// its value: accepted. With the feature on, the refusal says both ways out.
TEST(AppConfig, KeysOfAFeatureThatIsOffAreAccepted) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", std::string(kBase) +
                                                "[quantize.linear.float8]\nenable_fsdp_float8_all_gather = true\n"
                                                "recipe_name = \"rowwise\"\nfilter_fqns = [\"output\"]\n"
                                                "[validation]\nfreq = 5\n[fault_tolerance]\nreplica_id = 3\n"
                                                "[checkpoint]\ninitial_load_path = \"/ckpt\"\n"
                                                "[memory_estimation]\nenable = true\n");
  EXPECT_NO_THROW(parse_trainer_args({"--job.config_file", f}));
  EXPECT_EQ(error_of({"--job.config_file", f, "--validation.enable"}),
            "command line: key 'validation.enable' = true is not implemented by the embedded trainer; it runs with "
            "validation.enable = false (torchtitan's default)");
  EXPECT_EQ(error_of({"--job.config_file", f, "--checkpoint.enable"}),
            "command line: key 'checkpoint.enable' = true is not implemented by the embedded trainer; it runs with "
            "checkpoint.enable = false (torchtitan's default)");
  // A gated key whose switch is an implemented key: the refusal names both.
  const std::string g = dir.write("b.toml", std::string(kBase) +
                                                "[activation_checkpoint]\nmode = \"selective\"\n"
                                                "selective_ac_option = \"op\"\n"
                                                "per_op_sac_force_recompute_mm_shapes_by_fqns = [\"x\"]\n");
  EXPECT_EQ(error_of({"--job.config_file", g}),
            g + ": key 'activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns' = [\"x\"] is not "
                "implemented by the embedded trainer; it runs with "
                "activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns = [\"moe.router.gate\"] "
                "(torchtitan's default) or with activation_checkpoint.selective_ac_option other than \"op\"");
  EXPECT_NO_THROW(parse_trainer_args({"--job.config_file", g, "--activation_checkpoint.selective_ac_option", "2"}));
  // A key torchtitan v0.2.2 does not have, in a section kept for torchtitan.
  EXPECT_EQ(error_of({"--job.config_file", f, "--quantize.linear.float8.unknown_knob", "1"}),
            "command line: key 'quantize.linear.float8.unknown_knob' = \"1\" is not a torchtitan v0.2.2 key the "
            "embedded trainer knows; it runs without it (remove it)");
}

TEST(AppConfig, ParallelDegreesResolveForTheWorld) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  // dp_shard -1 takes the ranks left over; the batch grows with the data-parallel degree.
  TrainerConfig c = parse_trainer_args({"--job.config_file", f, "--parallelism.tensor_parallel_degree", "2",
                                        "--parallelism.expert_parallel_degree", "4"},
                                       /*world_size=*/8, /*rank=*/3);
  EXPECT_EQ(c.dims.dp_shard, 4);
  EXPECT_EQ(c.dims.tp, 2);
  EXPECT_EQ(c.dims.ep, 4);
  EXPECT_EQ(c.world_size, 8);
  EXPECT_EQ(c.rank, 3);
  EXPECT_EQ(c.global_batch_size, 16);
  EXPECT_EQ(c.fsdp_reshard_after_forward, "default");
  EXPECT_EQ(c.init_timeout_seconds, 300);
  EXPECT_EQ(c.train_timeout_seconds, 100);
  // Degrees that do not multiply to the world size break torchtitan's rule.
  try {
    parse_trainer_args({"--job.config_file", f, "--parallelism.tensor_parallel_degree", "2"});
    ADD_FAILURE() << "TP 2 accepted in a world of 1";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("does not divide world size 1"), std::string::npos) << e.what();
  }
}

TEST(AppConfig, ContextParallelIsNotImplemented) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  EXPECT_EQ(error_of({"--job.config_file", f, "--parallelism.context_parallel_degree", "2"}),
            "command line: key 'parallelism.context_parallel_degree': 2: context parallelism is not implemented "
            "yet (use 1)");
}

TEST(AppConfig, ImplementedKeysWithUnsupportedValues) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  const struct {
    std::vector<std::string> args;
    std::string message;
  } rows[] = {
      {{"--model.name", "llama3"},
       "command line: key 'model.name': 'llama3' is not a model of the embedded trainer (models: qwen3)"},
      {{"--model.flavor", "nope"}, "command line: key 'model.flavor': unknown flavor 'nope'"},
      {{"--activation_checkpoint.selective_ac_option", "x"},
       "command line: key 'activation_checkpoint.selective_ac_option': must be 'op' or a non-negative integer, got "
       "'x'"},
      {{"--loss-chunk-tokens", "0"}, "command line: --loss-chunk-tokens '0': must be a positive integer"},
      {{"--loss-chunk-tokens", "1k"}, "command line: --loss-chunk-tokens '1k': must be a positive integer"},
      // Read by per-op AC only (selective_ac_option "op"); otherwise inert, see KeysOfAFeatureThatIsOffAreAccepted.
      {{"--activation_checkpoint.selective_ac_option", "op",
        "--activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns", "moe.router.gate,attention.wq"},
       "command line: key 'activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns' = [\"moe.router.gate\", "
       "\"attention.wq\"] is not implemented"},
      {{"--compile.components", "model,graph"},
       "command line: key 'compile.components': unknown component 'graph' (torchtitan's are model and loss)"},
      {{"--activation_checkpoint.mode", "memory_budget"},
       "command line: key 'activation_checkpoint.mode': 'memory_budget' is not implemented"},
      {{"--optimizer.name", "Adam"}, "command line: key 'optimizer.name': 'Adam' is not implemented"},
      {{"--training.dataset", "wiki"}, "command line: key 'training.dataset': unknown dataset 'wiki'"},
      {{"--training.dataset", "tokens"},
       "command line: key 'training.dataset_path': dataset 'tokens' needs a token file path"},
      {{"--training.steps", "0"}, "command line: key 'training.steps': must be > 0, got 0"},
      {{"--training.max_norm", "0"}, "command line: key 'training.max_norm': must be > 0"},
  };
  for (const auto& r : rows) {
    std::vector<std::string> args{"--job.config_file", f};
    args.insert(args.end(), r.args.begin(), r.args.end());
    const std::string e = error_of(args);
    EXPECT_EQ(e.substr(0, r.message.size()), r.message) << e;
  }
}

TEST(AppConfig, AcModes) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  EXPECT_EQ(parse_trainer_args({"--job.config_file", f, "--activation_checkpoint.mode", "none"}).ac.mode, ACMode::None);
  EXPECT_EQ(parse_trainer_args({"--job.config_file", f, "--activation_checkpoint.mode", "full"}).ac.mode, ACMode::Full);
  TrainerConfig s = parse_trainer_args({"--job.config_file", f, "--activation_checkpoint.selective_ac_option", "0"});
  EXPECT_EQ(s.ac.mode, ACMode::Selective);
  EXPECT_EQ(s.ac.every_n, 0);
  EXPECT_FALSE(s.ac.per_op);
  TrainerConfig op = parse_trainer_args({"--job.config_file", f, "--activation_checkpoint.selective_ac_option", "op"});
  EXPECT_EQ(op.ac.mode, ACMode::Selective);
  EXPECT_TRUE(op.ac.per_op);
}

TEST(AppConfig, C4FallsBackToSyntheticWithANote) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  TrainerConfig c = parse_trainer_args({"--job.config_file", f});  // default dataset c4_test
  EXPECT_EQ(c.dataset, DatasetKind::Synthetic);
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("using the synthetic dataset"), std::string::npos);
  TrainerConfig s = parse_trainer_args({"--job.config_file", f, "--training.dataset", "synthetic"});
  EXPECT_TRUE(s.notes.empty());
  const std::string tokens = dir.write("t.bin", std::string(16, '\0'));
  TrainerConfig t =
      parse_trainer_args({"--job.config_file", f, "--training.dataset", "tokens", "--training.dataset_path", tokens});
  EXPECT_EQ(t.dataset, DatasetKind::TokenFile);
  EXPECT_EQ(t.dataset_path, tokens);
}

TEST(AppConfig, DryRunFlagAndDevice) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  TrainerConfig c = parse_trainer_args({"--job.config_file", f, "--dry-run", "--device", "cpu"});
  EXPECT_TRUE(c.dry_run);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(error_of({"--job.config_file", f, "--device", "tpu"}), "command line: --device 'tpu': must be cpu or cuda");
}

// Published flavors: counts from torchtitan's formula worked by hand.
TEST(AppConfig, DryRunNumbers) {
  const struct {
    const char* flavor;
    int64_t seq_len;
    int64_t params, active;
    double flops;
    int64_t layers;
  } rows[] = {
      {"30B-A3B", 4096, 30'532'122'624, 3'353'032'704, 27.91e9, 48},
      {"235B-A22B", 4096, 235'093'634'560, 22'190'763'520, 167.26e9, 94},
      {"debugmodel", 2048, 31'987'968, 31'987'968, 0.5914e9, 8},
  };
  for (const auto& r : rows) {
    TrainerConfig c = parse_trainer_args({"--model.name", "qwen3", "--model.flavor", r.flavor, "--training.seq_len",
                                          std::to_string(r.seq_len), "--dry-run"});
    nlohmann::json j = dry_run_report(c);
    EXPECT_EQ(j["model"], "qwen3");
    EXPECT_EQ(j["flavor"], r.flavor);
    EXPECT_EQ(j["seq_len"], r.seq_len);
    EXPECT_EQ(j["n_layers"], r.layers);
    EXPECT_EQ(j["params"].get<int64_t>(), r.params) << r.flavor;
    EXPECT_EQ(j["active_params"].get<int64_t>(), r.active) << r.flavor;
    EXPECT_NEAR(j["flops_per_token"].get<double>(), r.flops, 0.01e9) << r.flavor;
  }
  // 30B-A3B at seq 8192 (torchtitan's formula: 37.58e9)
  TrainerConfig c = parse_trainer_args(
      {"--model.name", "qwen3", "--model.flavor", "30B-A3B", "--training.seq_len", "8192", "--dry-run"});
  EXPECT_NEAR(dry_run_report(c)["flops_per_token"].get<double>(), 37.58e9, 0.01e9);
  // A reduced-depth variant
  TrainerConfig l6 = parse_trainer_args({"--model.name", "qwen3", "--model.flavor", "30B-A3B-L6", "--dry-run"});
  EXPECT_EQ(dry_run_report(l6)["n_layers"], 6);
}

TEST(AppConfig, OptimizerImplementation) {
  TempDir dir("cfg");
  const std::string f = dir.write("a.toml", kBase);
  TrainerConfig d = parse_trainer_args({"--job.config_file", f, "--training.dataset", "synthetic"});
  EXPECT_EQ(d.optimizer.implementation, "fused");  // torchtitan's default
  EXPECT_TRUE(d.notes.empty());                    // a default is not worth a note
  TrainerConfig l = parse_trainer_args(
      {"--job.config_file", f, "--training.dataset", "synthetic", "--optimizer.implementation", "for-loop"});
  EXPECT_EQ(l.optimizer.implementation, "for-loop");
  EXPECT_TRUE(l.notes.empty());
  // An explicit fused request says how it runs where the kernel is missing.
  TrainerConfig x = parse_trainer_args(
      {"--job.config_file", f, "--training.dataset", "synthetic", "--optimizer.implementation", "fused"});
  EXPECT_EQ(x.notes.size(), fused_adamw_available() ? 0u : 1u);
  if (!x.notes.empty()) {
    EXPECT_NE(x.notes[0].find("running 'foreach'"), std::string::npos) << x.notes[0];
  }
  const std::string e = error_of({"--job.config_file", f, "--optimizer.implementation", "fast"});
  EXPECT_NE(e.find("optimizer.implementation"), std::string::npos) << e;
}

}  // namespace
}  // namespace partune::trainer
