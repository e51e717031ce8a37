#include "trainer/config/trainer_config.h"

#include <charconv>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/ac_policy.h"
#include "common/error.h"
#include "common/flops.h"
#include "common/job_keys.h"
#include "trainer/train/optimizer.h"

namespace partune::trainer {

namespace {

// Names where a key's value came from: the CLI when it was overridden there,
// else the config file.
using WhereFn = std::function<std::string(const std::string& key)>;

[[noreturn]] void fail(const std::string& where, const std::string& key, const std::string& reason) {
  throw InputError(where + ": key '" + key + "': " + reason);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Keys the trainer does not implement are accepted where they change
// nothing torchtitan computes: at torchtitan's default, or while the feature
// they belong to is off (FeatureGate). Anything else is refused, naming the
// key, its value and what would run.
void check_unimplemented(const JobConfig& job, const WhereFn& where) {
  for (const auto& [key, value] : job.values()) {
    const KeySpec* spec = find_key_spec(key);
    if (spec == nullptr)  // a passthrough key (is_passthrough_key): not in torchtitan v0.2.2's schema
      throw InputError(where(key) + ": key '" + key + "' = " + value_to_string(value) +
                       " is not a torchtitan v0.2.2 key the embedded trainer knows; it runs without it (remove it)");
    if (spec->trainer != TrainerSupport::Unimplemented) continue;
    if (spec->default_value && *spec->default_value == value) continue;
    if (spec->gate && !feature_on(job, *spec->gate)) continue;
    std::string runs = spec->default_value ? key + " = " + value_to_string(*spec->default_value) : key + " unset";
    runs += " (torchtitan's default)";
    if (spec->gate) runs += " or with " + feature_off_text(*spec->gate);
    throw InputError(where(key) + ": key '" + key + "' = " + value_to_string(value) +
                     " is not implemented by the embedded trainer; it runs with " + runs);
  }
}

int64_t positive(const JobConfig& job, const WhereFn& where, const std::string& key) {
  int64_t v = job.get_int(key);
  if (v <= 0) fail(where(key), key, "must be > 0, got " + std::to_string(v));
  return v;
}

double non_negative(const JobConfig& job, const WhereFn& where, const std::string& key) {
  double v = job.get_float(key);
  if (!(v >= 0)) fail(where(key), key, "must be >= 0, got " + value_to_string(Value{v}));
  return v;
}

ACConfig parse_ac(const JobConfig& job, const WhereFn& where) {
  AcPolicyError error;
  const std::optional<AcPolicy> p = ac_policy_of(job, &error);
  if (!p) fail(where(error.key), error.key, error.message);
  switch (p->mode) {
    case AcPolicyMode::None:
      return {ACMode::None, 1};
    case AcPolicyMode::Full:
      return {ACMode::Full, 1};
    case AcPolicyMode::MemoryBudget:
      fail(where(keys::kAcMode), keys::kAcMode,
           "'memory_budget' is not implemented by the embedded trainer (use none, full or selective)");
    case AcPolicyMode::Selective:
      break;
  }
  if (p->per_op) return {ACMode::Selective, 1, /*per_op=*/true};
  if (p->every_n > std::numeric_limits<int>::max())
    fail(where(keys::kAcOption), keys::kAcOption, "block count " + std::to_string(p->every_n) + " is too large");
  return {ACMode::Selective, static_cast<int>(p->every_n)};
}

ParallelDims parse_dims(const JobConfig& job, const WhereFn& where, int world_size) {
  ParallelDims dims = parallel_dims_of(job);
  if (dims.cp != 1)
    fail(where("parallelism.context_parallel_degree"), "parallelism.context_parallel_degree",
         std::to_string(dims.cp) + ": context parallelism is not implemented yet (use 1)");
  auto violations = check_parallel_dims(dims, world_size);
  if (!violations.empty()) throw InputError(where("parallelism") + ": " + violations.front().message);
  return dims;
}

// [profiling]: the trace folder is job.dump_folder joined with
// save_traces_folder (an absolute save_traces_folder stands alone, as
// os.path.join). The schedule's numbers are checked only when profiling is on,
// as torchtitan (which asserts wait >= 0) and torch.profiler.schedule
// (warmup >= 0, active > 0) check them only then.
ProfilingConfig parse_profiling(const JobConfig& job, const WhereFn& where) {
  ProfilingConfig p;
  p.enable = job.get_bool("profiling.enable_profiling");
  p.traces_folder =
      (std::filesystem::path(job.get_string("job.dump_folder")) / job.get_string("profiling.save_traces_folder"))
          .string();
  p.freq = job.get_int("profiling.profile_freq");
  p.warmup = job.get_int("profiling.profiler_warmup");
  p.active = job.get_int("profiling.profiler_active");
  if (!p.enable) return p;
  if (p.active <= 0)
    fail(where("profiling.profiler_active"), "profiling.profiler_active",
         "must be > 0 (steps traced per cycle), got " + std::to_string(p.active));
  if (p.warmup < 0)
    fail(where("profiling.profiler_warmup"), "profiling.profiler_warmup",
         "must be >= 0, got " + std::to_string(p.warmup));
  if (p.freq < p.warmup + p.active)
    fail(where("profiling.profile_freq"), "profiling.profile_freq",
         "must be >= profiling.profiler_warmup + profiling.profiler_active = " + std::to_string(p.warmup + p.active) +
             ", got " + std::to_string(p.freq));
  return p;
}

TrainerConfig interpret(const JobConfig& job, const WhereFn& where, int world_size, int rank) {
  check_unimplemented(job, where);
  TrainerConfig c;
  c.job = job;
  c.config_file = job.has("job.config_file") ? job.get_string("job.config_file") : "";
  c.world_size = world_size;
  c.rank = rank;

  c.model_name = job.get_string("model.name");
  if (c.model_name != "qwen3")
    fail(where("model.name"), "model.name",
         "'" + c.model_name + "' is not a model of the embedded trainer (models: " + join(model_names()) + ")");
  const std::string flavor = job.get_string("model.flavor");
  auto f = find_flavor(c.model_name, flavor);
  if (!f)
    fail(where("model.flavor"), "model.flavor",
         "unknown flavor '" + flavor + "' (flavors: " + join(flavor_names(c.model_name)) +
             "; '<flavor>-L<n>' runs a flavor with n layers)");
  c.flavor = *f;

  c.local_batch_size = positive(job, where, "training.local_batch_size");
  c.seq_len = positive(job, where, "training.seq_len");
  c.steps = positive(job, where, "training.steps");
  c.log_freq = positive(job, where, "metrics.log_freq");
  c.max_norm = job.get_float("training.max_norm");
  if (!(c.max_norm > 0))
    fail(where("training.max_norm"), "training.max_norm", "must be > 0, got " + value_to_string(Value{c.max_norm}));
  c.mixed_precision_param = job.get_string("training.mixed_precision_param");

  c.dims = parse_dims(job, where, world_size);
  BatchShape batch{c.local_batch_size, job.get_int("training.global_batch_size"), c.seq_len};
  if (batch.global_batch_size == 0 || batch.global_batch_size < -1)
    fail(where("training.global_batch_size"), "training.global_batch_size",
         "must be -1 (local batch size x data-parallel degree) or > 0, got " + std::to_string(batch.global_batch_size));
  for (const auto& v : check_model_rules(c.dims, c.flavor, batch))
    throw InputError(where("training.global_batch_size") + ": " + v.message);
  c.grad_accum_steps = grad_accumulation_steps(c.dims, batch);
  c.global_batch_size = c.grad_accum_steps * c.local_batch_size * dp_degree(c.dims);

  c.dataset_name = job.get_string("training.dataset");
  auto path = job.get("training.dataset_path");
  if (c.dataset_name == "synthetic") {
    c.dataset = DatasetKind::Synthetic;
  } else if (c.dataset_name == "tokens") {
    c.dataset = DatasetKind::TokenFile;
    if (!path) fail(where("training.dataset"), "training.dataset_path", "dataset 'tokens' needs a token file path");
    c.dataset_path = std::get<std::string>(*path);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(c.dataset_path, ec))
      fail(where("training.dataset_path"), "training.dataset_path", "'" + c.dataset_path + "' is not a readable file");
  } else if (c.dataset_name == "c4_test" || c.dataset_name == "c4") {
    c.dataset = DatasetKind::Synthetic;
    c.notes.push_back("training.dataset '" + c.dataset_name +
                      "' needs a tokenizer and network access, which the embedded trainer does not have; "
                      "using the synthetic dataset instead");
  } else {
    fail(where("training.dataset"), "training.dataset",
         "unknown dataset '" + c.dataset_name + "' (embedded trainer: synthetic, tokens, or c4/c4_test -> synthetic)");
  }
  if (path && c.dataset != DatasetKind::TokenFile)
    c.notes.push_back("training.dataset_path is ignored: dataset '" + c.dataset_name + "' reads no files");

  const std::string opt = job.get_string("optimizer.name");
  if (opt != "AdamW")
    fail(where("optimizer.name"), "optimizer.name", "'" + opt + "' is not implemented by the embedded trainer (AdamW)");
  c.optimizer.lr = non_negative(job, where, "optimizer.lr");
  c.optimizer.eps = non_negative(job, where, "optimizer.eps");
  c.optimizer.weight_decay = non_negative(job, where, "optimizer.weight_decay");
  c.optimizer.beta1 = job.get_float("optimizer.beta1");
  c.optimizer.beta2 = job.get_float("optimizer.beta2");
  c.optimizer.implementation = job.get_string("optimizer.implementation");
  // torchtitan's default is fused; only an explicit request gets a note when
  // this LibTorch runs it as foreach (resolve_adamw_impl).
  const std::string runs = to_string(resolve_adamw_impl(c.optimizer.implementation));
  if (job.has("optimizer.implementation") && c.optimizer.implementation != runs)
    c.notes.push_back("optimizer.implementation '" + c.optimizer.implementation + "' needs LibTorch >= 2.4 (this is " +
                      TORCH_VERSION + "); running '" + runs + "', the same update in more passes");

  if (job.get("lr_scheduler.total_steps"))
    c.lr_scheduler.total_steps = positive(job, where, "lr_scheduler.total_steps");
  c.lr_scheduler.warmup_steps = job.get_int("lr_scheduler.warmup_steps");
  if (c.lr_scheduler.warmup_steps < 0)
    fail(where("lr_scheduler.warmup_steps"), "lr_scheduler.warmup_steps", "must be >= 0");
  if (job.get("lr_scheduler.decay_ratio")) {
    double ratio = job.get_float("lr_scheduler.decay_ratio");
    if (!(ratio >= 0 && ratio <= 1))
      fail(where("lr_scheduler.decay_ratio"), "lr_scheduler.decay_ratio", "must be in [0, 1]");
    c.lr_scheduler.decay_ratio = ratio;
  }
  c.lr_scheduler.decay_type = job.get_string("lr_scheduler.decay_type");
  c.lr_scheduler.min_lr_factor = job.get_float("lr_scheduler.min_lr_factor");
  if (!(c.lr_scheduler.min_lr_factor >= 0 && c.lr_scheduler.min_lr_factor <= 1))
    fail(where("lr_scheduler.min_lr_factor"), "lr_scheduler.min_lr_factor", "must be in [0, 1]");

  c.ac = parse_ac(job, where);
  c.fsdp_reshard_after_forward = job.get_string("parallelism.fsdp_reshard_after_forward");
  c.loss_parallel = !job.get_bool("parallelism.disable_loss_parallel");
  c.init_timeout_seconds = positive(job, where, "comm.init_timeout_seconds");
  c.train_timeout_seconds = positive(job, where, "comm.train_timeout_seconds");
  c.disable_color_printing = job.get_bool("metrics.disable_color_printing");

  if (job.get("debug.seed")) {
    int64_t seed = job.get_int("debug.seed");
    if (seed < 0) fail(where("debug.seed"), "debug.seed", "must be >= 0");
    c.seed = static_cast<uint64_t>(seed);
  }

  c.compile_enable = job.get_bool("compile.enable");
  for (const auto& component : job.get_list("compile.components")) {
    if (component == "model")
      c.compile_model = c.compile_enable;
    else if (component == "loss")
      c.compile_loss = c.compile_enable;
    else
      fail(where("compile.components"), "compile.components",
           "unknown component '" + component + "' (torchtitan's are model and loss)");
  }
  c.profiling = parse_profiling(job, where);
  return c;
}

}  // namespace

TrainerConfig trainer_config_from_job(const JobConfig& job, const std::string& source, int world_size, int rank) {
  return interpret(
      job, [&](const std::string&) { return source; }, world_size, rank);
}

TrainerConfig parse_trainer_args(const std::vector<std::string>& args, int world_size, int rank) {
  std::vector<std::string> overrides;
  bool dry_run = false;
  std::optional<std::string> device;
  int64_t loss_chunk_tokens = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--dry-run") {
      dry_run = true;
    } else if (a == "--device" || a.rfind("--device=", 0) == 0) {
      std::string d;
      if (a == "--device") {
        if (i + 1 >= args.size()) throw InputError("command line: --device needs a value (cpu or cuda)");
        d = args[++i];
      } else {
        d = a.substr(9);
      }
      if (d != "cpu" && d != "cuda") throw InputError("command line: --device '" + d + "': must be cpu or cuda");
      device = d;
    } else if (a == "--loss-chunk-tokens" || a.rfind("--loss-chunk-tokens=", 0) == 0) {
      std::string v;
      if (a == "--loss-chunk-tokens") {
        if (i + 1 >= args.size()) throw InputError("command line: --loss-chunk-tokens needs a positive integer");
        v = args[++i];
      } else {
        v = a.substr(20);
      }
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), loss_chunk_tokens);
      if (ec != std::errc() || ptr != v.data() + v.size() || loss_chunk_tokens <= 0)
        throw InputError("command line: --loss-chunk-tokens '" + v + "': must be a positive integer");
    } else {
      overrides.push_back(a);
    }
  }
  JobConfig cli;
  cli.apply_cli(overrides);
  JobConfig merged;
  std::string file;
  // As torchtitan v0.2.2's config manager: the file when one is given (a
  // regular file, from_toml_file), else every key at torchtitan's default.
  if (cli.has("job.config_file")) {
    file = cli.get_string("job.config_file");
    merged = JobConfig::from_toml_file(file);
  }
  merged.merge(cli);
  const std::string file_where = file.empty() ? "defaults" : file;
  TrainerConfig c = interpret(
      merged, [&](const std::string& key) { return cli.has(key) ? std::string("command line") : file_where; },
      world_size, rank);
  c.dry_run = dry_run;
  c.device = device;
  c.loss_chunk_tokens = loss_chunk_tokens;
  return c;
}

nlohmann::json dry_run_report(const TrainerConfig& cfg) {
  const Flavor& f = cfg.flavor;
  const ParamCounts p = count_params(f);
  nlohmann::json j;
  j["model"] = cfg.model_name;
  j["flavor"] = f.name;
  j["seq_len"] = cfg.seq_len;
  j["n_layers"] = f.n_layers;
  j["dim"] = f.dim;
  j["vocab_size"] = f.vocab_size;
  j["moe"] = f.moe;
  j["num_experts"] = f.num_experts;
  j["top_k"] = f.top_k;
  j["params"] = p.total();
  j["active_params"] = p.active;
  j["embedding_params"] = p.embedding;
  j["flops_per_token"] = flops_per_token(f, cfg.seq_len);
  j["local_batch_size"] = cfg.local_batch_size;
  j["global_batch_size"] = cfg.global_batch_size;
  j["grad_accum_steps"] = cfg.grad_accum_steps;
  j["steps"] = cfg.steps;
  return j;
}

}  // namespace partune::trainer
