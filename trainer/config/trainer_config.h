// The trainer's resolved configuration: a torchtitan v0.2.x job config (TOML
// plus `--section.key value` overrides, CLI over TOML over defaults) checked
// against what the embedded trainer implements and turned into plain values.
//
// Every key whose schema entry is TrainerSupport::Unimplemented is an error
// when set to anything but its default; implemented keys with values the
// trainer cannot honour (model.name other than qwen3, context parallelism,
// ...) are errors too. Errors are partune::InputError naming the source and the key.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/flavors.h"
#include "common/job_config.h"
#include "common/parallel_dims.h"
#include "trainer/checkpoint/checkpoint.h"

namespace partune::trainer {

enum class DatasetKind { Synthetic, TokenFile };

struct LRScheduleConfig {
  std::optional<int64_t> total_steps;  // lr_scheduler.total_steps; nullopt: training.steps
  int64_t warmup_steps = 200;
  std::optional<double> decay_ratio;  // nullopt: decay over every step after warmup
  std::string decay_type = "linear";  // linear | sqrt | cosine
  double min_lr_factor = 0.0;
};

struct OptimizerConfig {
  double lr = 8e-4;
  double beta1 = 0.9, beta2 = 0.95;  // torchtitan's defaults (optimizer.beta1/beta2)
  double eps = 1e-8;
  double weight_decay = 0.1;
  // optimizer.implementation: for-loop | foreach | fused (trainer/train/optimizer.h).
  // "fused" where this LibTorch lacks the kernel runs "foreach" (resolve_adamw_impl).
  std::string implementation = "fused";
};

// [profiling] (trainer/train/profiler.h): torch.profiler traces on the schedule
// wait = freq - (warmup + active), warmup, active. Checked only when enabled
// (torchtitan asserts only then): active > 0, warmup >= 0, freq >= warmup + active.
struct ProfilingConfig {
  bool enable = false;                                     // profiling.enable_profiling
  std::string traces_folder = "./outputs/profile_traces";  // job.dump_folder / profiling.save_traces_folder
  int64_t freq = 10;                                       // profiling.profile_freq
  int64_t warmup = 3;                                      // profiling.profiler_warmup
  int64_t active = 1;                                      // profiling.profiler_active
};

struct TrainerConfig {
  JobConfig job;            // the merged job config (CLI over TOML)
  std::string config_file;  // job.config_file; empty when none was given

  std::string model_name;  // "qwen3"
  Flavor flavor;
  int64_t local_batch_size = 8;
  int64_t global_batch_size = 8;  // resolved (-1 -> lbs * dp degree)
  int64_t grad_accum_steps = 1;
  int64_t seq_len = 2048;
  int64_t steps = 10000;
  double max_norm = 1.0;
  std::string mixed_precision_param = "bfloat16";  // used on CUDA; CPU computes in fp32

  DatasetKind dataset = DatasetKind::Synthetic;
  std::string dataset_name;  // as configured ("c4_test", "synthetic", "tokens", ...)
  std::string dataset_path;  // TokenFile only

  OptimizerConfig optimizer;
  LRScheduleConfig lr_scheduler;
  ACConfig ac;
  int64_t log_freq = 10;
  bool disable_color_printing = false;  // metrics.disable_color_printing (colours need a TTY too)
  uint64_t seed = 0;                    // debug.seed; 0 when unset (runs are reproducible by default)

  ParallelDims dims;  // resolved for world_size (CP and PP are 1: not implemented)
  int world_size = 1;
  int rank = 0;
  std::string fsdp_reshard_after_forward = "default";  // default | always | never
  bool loss_parallel = true;                           // not parallelism.disable_loss_parallel (apply_loss_parallel)
  int64_t init_timeout_seconds = 300;   // comm.init_timeout_seconds: rendezvous, group creation, first step
  int64_t train_timeout_seconds = 100;  // comm.train_timeout_seconds: every later step (collectives, watchdog)
  bool compile_enable = false;          // the compiled memory mode (apply_compile, model_passes.h)
  bool compile_model = false;           // compile.enable and "model" in compile.components: fused elementwise
  bool compile_loss = false;            // compile.enable and "loss" in compile.components: fused output + loss
  ProfilingConfig profiling;            // [profiling] traces

  // Not torchtitan keys: trainer flags.
  bool dry_run = false;               // --dry-run
  std::optional<std::string> device;  // --device cpu|cuda; else $PARTUNE_DEVICE_TYPE; else cuda if available
  int64_t loss_chunk_tokens = 0;      // --loss-chunk-tokens N: the fused loss's chunk; 0: the whole microbatch
  bool emulated = false;              // --emulate-world N: rank `rank` of `world_size` alone (emulated_backend.h)
  bool balanced_routing = false;      // --balanced-routing (and every emulated rank): RouterImpl::balanced

  // Things a user should know about how the config was interpreted (printed
  // at start): c4 replaced by synthetic data, ...
  std::vector<std::string> notes;
};

// Parses `args` (argv without the program name): `--job.config_file F`
// (optional, as in torchtitan: without it every key starts at torchtitan's
// default; a given path must be a regular file), `--section.key value`
// overrides, `--dry-run`, `--device D`. Throws InputError for anything bad. world_size/rank: this process's place (from
// the launcher's environment in main).
TrainerConfig parse_trainer_args(const std::vector<std::string>& args, int world_size = 1, int rank = 0);

// Interprets an already-merged job config. `source` names where values came
// from in error messages (the config file, or "command line").
TrainerConfig trainer_config_from_job(const JobConfig& job, const std::string& source, int world_size = 1,
                                      int rank = 0);

// The JSON object `--dry-run` prints: model, flavor, seq_len, n_layers,
// params, active_params, flops_per_token, and the batch shape. Builds nothing.
nlohmann::json dry_run_report(const TrainerConfig& cfg);

}  // namespace partune::trainer
