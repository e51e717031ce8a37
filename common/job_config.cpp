#include "common/job_config.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/toml_text.h"

namespace partune {

namespace {

using T = ValueType;
using S = TrainerSupport;
constexpr auto I = S::Implemented;
constexpr auto N = S::Inert;
constexpr auto U = S::Unimplemented;

KeySpec k(const char* key, T type, std::optional<Value> def, S support, std::vector<std::string> choices = {}) {
  return KeySpec{key, type, std::move(def), std::move(choices), support, std::nullopt};
}
// A key torchtitan reads only while `gate` is on (FeatureGate).
KeySpec gated(KeySpec spec, FeatureGate gate) {
  spec.gate = std::move(gate);
  return spec;
}
Value str(const char* s) { return Value{std::string(s)}; }
Value i64(int64_t v) { return Value{v}; }
Value f64(double v) { return Value{v}; }
Value list(std::vector<std::string> v) { return Value{StringList(std::move(v))}; }
const std::optional<Value> None = std::nullopt;

// The feature switches of torchtitan v0.2.2's gated sections.
const FeatureGate kFloat8Linear{"model.converters", "quantize.linear.float8"};
const FeatureGate kMxLinear{"model.converters", "quantize.linear.mx"};
const FeatureGate kFloat8GroupedMm{"model.converters", "quantize.grouped_mm.float8"};
const FeatureGate kMxGroupedMm{"model.converters", "quantize.grouped_mm.mx"};
const FeatureGate kFaultTolerance{"fault_tolerance.enable", ""};
const FeatureGate kValidation{"validation.enable", ""};

// torchtitan v0.2.2 torchtitan/config/job_config.py: every key but
// parallelism.module_fqns_per_model_part (a list of lists). Defaults are
// torchtitan's.
std::vector<KeySpec> build_schema() {
  return {
      k("job.config_file", T::String, None, N),
      k("job.dump_folder", T::String, str("./outputs"), N),
      k("job.description", T::String, str("default job"), N),
      k("job.print_config", T::Bool, false, N),
      k("job.save_config_file", T::String, None, N),
      k("job.custom_config_module", T::String, str(""), U),
      k("profiling.enable_profiling", T::Bool, false, I),
      k("profiling.save_traces_folder", T::String, str("profile_traces"), I),
      k("profiling.profile_freq", T::Int, i64(10), I),
      k("profiling.profiler_active", T::Int, i64(1), I),
      k("profiling.profiler_warmup", T::Int, i64(3), I),
      k("profiling.enable_memory_snapshot", T::Bool, false, U),
      k("profiling.save_memory_snapshot_folder", T::String, str("memory_snapshot"), N),
      k("metrics.log_freq", T::Int, i64(10), I),
      k("metrics.enable_tensorboard", T::Bool, false, N),
      k("metrics.disable_color_printing", T::Bool, false, I),
      k("metrics.save_tb_folder", T::String, str("tb"), N),
      k("metrics.save_for_all_ranks", T::Bool, false, N),
      k("metrics.enable_wandb", T::Bool, false, N),
      k("model.name", T::String, str("llama3"), I),
      k("model.flavor", T::String, str("debugmodel"), I),
      k("model.hf_assets_path", T::String, str("./tests/assets/tokenizer"), N),
      k("model.tokenizer_path", T::String, None, N),
      k("model.converters", T::StringList, list({}), U),
      k("model.print_after_conversion", T::Bool, false, N),
      k("optimizer.name", T::String, str("AdamW"), I),
      k("optimizer.lr", T::Float, f64(8e-4), I),
      k("optimizer.beta1", T::Float, f64(0.9), I),
      k("optimizer.beta2", T::Float, f64(0.95), I),
      k("optimizer.eps", T::Float, f64(1e-8), I),
      k("optimizer.weight_decay", T::Float, f64(0.1), I),
      k("optimizer.implementation", T::String, str("fused"), I, {"for-loop", "foreach", "fused"}),
      k("optimizer.early_step_in_backward", T::Bool, false, U),
      k("lr_scheduler.warmup_steps", T::Int, i64(200), I),
      k("lr_scheduler.total_steps", T::Int, None, I),
      k("lr_scheduler.decay_ratio", T::Float, None, I),
      k("lr_scheduler.decay_type", T::String, str("linear"), I, {"linear", "sqrt", "cosine"}),
      k("lr_scheduler.min_lr_factor", T::Float, f64(0.0), I),
      k("training.dataset", T::String, str("c4_test"), I),
      k("training.dataset_path", T::String, None, I),
      k("training.local_batch_size", T::Int, i64(8), I),
      k("training.global_batch_size", T::Int, i64(-1), I),
      k("training.seq_len", T::Int, i64(2048), I),
      k("training.max_norm", T::Float, f64(1.0), I),
      k("training.steps", T::Int, i64(10000), I),
      k("training.enable_cpu_offload", T::Bool, false, U),
      k("training.dtype", T::String, str("float32"), U, {"bfloat16", "float32"}),
      k("training.mixed_precision_param", T::String, str("bfloat16"), I, {"bfloat16", "float32"}),
      k("training.mixed_precision_reduce", T::String, str("float32"), I, {"float32"}),
      k("training.gc_freq", T::Int, i64(50), N),
      k("training.gc_debug", T::Bool, false, N),
      k("training.dataloader.num_workers", T::Int, i64(0), N),
      k("training.dataloader.persistent_workers", T::Bool, false, N),
      k("training.dataloader.pin_memory", T::Bool, false, N),
      k("training.dataloader.prefetch_factor", T::Int, None, N),
      k("parallelism.data_parallel_replicate_degree", T::Int, i64(1), I),
      k("parallelism.data_parallel_shard_degree", T::Int, i64(-1), I),
      k("parallelism.fsdp_reshard_after_forward", T::String, str("default"), I, {"default", "always", "never"}),
      k("parallelism.tensor_parallel_degree", T::Int, i64(1), I),
      k("parallelism.disable_loss_parallel", T::Bool, false, I),
      k("parallelism.enable_async_tensor_parallel", T::Bool, false, U),
      k("parallelism.pipeline_parallel_degree", T::Int, i64(1), I),
      k("parallelism.pipeline_parallel_schedule", T::String, str("1F1B"), N),
      k("parallelism.pipeline_parallel_microbatch_size", T::Int, i64(1), N),
      k("parallelism.pipeline_parallel_first_stage_less_layers", T::Int, i64(1), N),
      k("parallelism.pipeline_parallel_last_stage_less_layers", T::Int, i64(1), N),
      k("parallelism.pipeline_parallel_layers_per_stage", T::Int, None, N),
      k("parallelism.pipeline_parallel_schedule_csv", T::String, str(""), N),
      k("parallelism.pipeline_parallel_expert_parallel_overlap", T::Bool, true, N),
      k("parallelism.context_parallel_degree", T::Int, i64(1), I),
      k("parallelism.context_parallel_load_balancer", T::String, str("headtail"), N),
      k("parallelism.context_parallel_rotate_method", T::String, str("allgather"), N, {"allgather", "alltoall"}),
      k("parallelism.expert_parallel_degree", T::Int, i64(1), I),
      k("parallelism.expert_tensor_parallel_degree", T::Int, i64(1), I),
      k("parallelism.expert_parallel_comm_backend", T::String, str("standard"), U, {"standard", "deepep"}),
      k("checkpoint.enable", T::Bool, false, U),
      k("checkpoint.folder", T::String, str("checkpoint"), N),
      k("checkpoint.interval", T::Int, i64(500), N),
      gated(k("checkpoint.initial_load_path", T::String, None, U), {"checkpoint.enable", ""}),
      k("checkpoint.initial_load_model_only", T::Bool, true, N),
      k("checkpoint.initial_load_in_hf", T::Bool, false, N),
      k("checkpoint.last_save_model_only", T::Bool, true, N),
      k("checkpoint.last_save_in_hf", T::Bool, false, N),
      k("checkpoint.export_dtype", T::String, str("float32"), N, {"float16", "bfloat16", "float32"}),
      k("checkpoint.async_mode", T::String, str("disabled"), N, {"disabled", "async", "async_with_pinned_mem"}),
      k("checkpoint.keep_latest_k", T::Int, i64(10), N),
      k("checkpoint.load_step", T::Int, i64(-1), N),
      k("checkpoint.create_seed_checkpoint", T::Bool, false, U),
      k("checkpoint.enable_ft_dataloader_checkpoints", T::Bool, true, N),
      k("checkpoint.initial_load_in_hf_quantized", T::Bool, false, N),
      k("checkpoint.exclude_from_loading", T::StringList, list({}), N),
      k("checkpoint.enable_first_step_checkpoint", T::Bool, false, N),
      gated(k("checkpoint.load_only", T::Bool, false, U), {"checkpoint.enable", ""}),
      k("activation_checkpoint.mode", T::String, str("selective"), I, {"selective", "full", "memory_budget", "none"}),
      k("activation_checkpoint.selective_ac_option", T::String, str("2"), I),
      k("activation_checkpoint.early_stop", T::Bool, false, N),
      k("activation_checkpoint.memory_budget", T::Float, f64(0.5), N),
      k("activation_checkpoint.preserve_rng_state", T::Bool, true, N),
      gated(k("activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns", T::StringList,
              list({"moe.router.gate"}), U),
            {"activation_checkpoint.selective_ac_option", "op"}),
      k("activation_checkpoint.visualize_memory_budget_pareto", T::Bool, false, N),
      k("activation_checkpoint.determinism_check", T::String, str("default"), N),
      k("activation_checkpoint.debug", T::Bool, false, N),
      k("compile.enable", T::Bool, false, I),
      k("compile.components", T::StringList, list({"model", "loss"}), I),
      k("compile.backend", T::String, str("inductor"), N),
      // Quantization: each group is read only by the model converter that
      // model.converters names (torchtitan/components/quantization).
      gated(k("quantize.linear.float8.enable_fsdp_float8_all_gather", T::Bool, false, U), kFloat8Linear),
      gated(k("quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp", T::Bool, false, U), kFloat8Linear),
      gated(
          k("quantize.linear.float8.recipe_name", T::String, None, U, {"tensorwise", "rowwise", "rowwise_with_gw_hp"}),
          kFloat8Linear),
      gated(k("quantize.linear.float8.filter_fqns", T::StringList, list({}), U), kFloat8Linear),
      gated(k("quantize.linear.float8.emulate", T::Bool, false, U), kFloat8Linear),
      gated(k("quantize.linear.mx.mxfp8_dim1_cast_kernel_choice", T::String, str("triton"), U,
              {"triton", "cuda", "torch"}),
            kMxLinear),
      gated(k("quantize.linear.mx.recipe_name", T::String, str("mxfp8_cublas"), U), kMxLinear),
      gated(k("quantize.linear.mx.filter_fqns", T::StringList, list({"output"}), U), kMxLinear),
      gated(k("quantize.grouped_mm.float8.fqns", T::Any, list({}), U), kFloat8GroupedMm),  // a list or one string
      gated(k("quantize.grouped_mm.mx.recipe_name", T::String, str("mxfp8"), U, {"mxfp8"}), kMxGroupedMm),
      gated(k("quantize.grouped_mm.mx.fqns", T::Any, list({}), U), kMxGroupedMm),
      k("comm.init_timeout_seconds", T::Int, i64(300), I),
      k("comm.train_timeout_seconds", T::Int, i64(100), I),
      k("comm.trace_buf_size", T::Int, i64(20000), N),
      k("comm.save_traces_folder", T::String, str("comm_traces"), N),
      k("comm.save_traces_file_prefix", T::String, str("rank_"), N),
      k("comm.mode", T::String, str("default"), U, {"default", "fake_backend", "local_tensor"}),
      // Read by torchtitan's scripts/estimate only, never by a training run.
      k("memory_estimation.enable", T::Bool, false, N),
      k("memory_estimation.disable_fake_mode", T::Bool, false, N),
      k("fault_tolerance.enable", T::Bool, false, U),
      gated(k("fault_tolerance.process_group", T::String, str("gloo"), U), kFaultTolerance),
      gated(k("fault_tolerance.process_group_timeout_ms", T::Int, i64(10000), U), kFaultTolerance),
      gated(k("fault_tolerance.replica_id", T::Int, i64(0), U), kFaultTolerance),
      gated(k("fault_tolerance.group_size", T::Int, i64(0), U), kFaultTolerance),
      gated(k("fault_tolerance.min_replica_size", T::Int, i64(1), U), kFaultTolerance),
      gated(k("fault_tolerance.semi_sync_method", T::String, None, U), kFaultTolerance),
      k("experimental.custom_import", T::String, str(""), U),
      k("experimental.custom_args_module", T::String, str(""), U),
      k("validation.enable", T::Bool, false, U),
      gated(k("validation.dataset", T::String, str("c4_validation"), U), kValidation),
      gated(k("validation.dataset_path", T::String, None, U), kValidation),
      gated(k("validation.local_batch_size", T::Int, i64(8), U), kValidation),
      gated(k("validation.seq_len", T::Int, i64(2048), U), kValidation),
      gated(k("validation.freq", T::Int, i64(10), U), kValidation),
      gated(k("validation.steps", T::Int, i64(-1), U), kValidation),
      gated(k("validation.dataloader.num_workers", T::Int, i64(0), U), kValidation),
      gated(k("validation.dataloader.persistent_workers", T::Bool, false, U), kValidation),
      gated(k("validation.dataloader.pin_memory", T::Bool, false, U), kValidation),
      gated(k("validation.dataloader.prefetch_factor", T::Int, None, U), kValidation),
      k("debug.seed", T::Int, None, I),
      k("debug.deterministic", T::Bool, false, N),
      k("debug.deterministic_warn_only", T::Bool, false, N),
      k("debug.moe_force_load_balance", T::Bool, false, U),
  };
}

// Sections torchtitan has that partune does not type-check; kept verbatim for
// the torchtitan backend, refused by the embedded trainer.
constexpr std::string_view kPassthroughSections[] = {
    "quantize.", "fault_tolerance.", "experimental.", "validation.", "memory_estimation.", "float8.", "mx."};

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string where_prefix(std::string_view where) { return where.empty() ? "" : std::string(where) + ": "; }

[[noreturn]] void fail_key(std::string_view where, std::string_view key, const std::string& reason) {
  throw InputError(where_prefix(where) + "key '" + std::string(key) + "': " + reason);
}

std::string unknown_key_reason(std::string_view key) {
  std::string best;
  size_t best_d = 4;
  for (const auto& s : job_config_schema()) {
    size_t d = edit_distance(key, s.key);
    if (d < best_d) best_d = d, best = s.key;
  }
  std::string r = "not a torchtitan v0.2.2 job-config key";
  if (!best.empty()) r += " (did you mean '" + best + "'?)";
  return r;
}

std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  for (int prec = 6; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s(buf);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// A TOML basic string. TOML forbids raw control characters (U+0000-U+001F
// except tab, and U+007F) in strings: each is escaped, or the file would not
// parse (DEL) or a newline would end the string and start new keys. The C1
// controls (U+0080-U+009F, UTF-8 C2 80-9F) are legal TOML but terminals act
// on them (U+009B is CSI): escaped too, so a printed config is inert.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (u == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(s[++i])));
      out += buf;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// A key part as TOML writes it: bare when it is only A-Za-z0-9_-, else quoted,
// so a key holding a newline, '=', '[' or '#' cannot start another line.
std::string toml_key_part(std::string_view part) {
  const bool bare = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  return bare ? std::string(part) : quote(part);
}

// A dotted key ("a.b.c") as TOML: each part bare or quoted.
std::string toml_dotted_key(std::string_view key) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    out += toml_key_part(key.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) return out;
    out += '.';
    start = dot + 1;
  }
}

std::string_view type_of(const Value& v) {
  switch (v.index()) {
    case 0:
      return "boolean";
    case 1:
      return "integer";
    case 2:
      return "float";
    case 3:
      return "string";
    default:
      return "list of strings";
  }
}

// NaN and inf are no job-config value: TOML and JSON writers cannot carry
// them (JSON stores null), so a study holding one could never be read back.
void check_finite(std::string_view key, const Value& v, std::string_view where) {
  if (const double* d = std::get_if<double>(&v); d && !std::isfinite(*d))
    fail_key(where, key, "must be a finite number, got " + format_double(*d));
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Lead byte: 110xxxxx, 1110xxxx or 11110xxx, then that many 10xxxxxx.
    const size_t more = (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 0;
    if (more == 0 || i + more >= s.size()) return false;
    char32_t cp = c & (0x3f >> more);
    for (size_t k = 1; k <= more; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[more] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
    i += more + 1;
  }
  return true;
}

// Keys and strings are written to TOML and JSON, which carry only UTF-8:
// anything else could be neither written nor read back.
void check_utf8(std::string_view key, const Value& v, std::string_view where) {
  if (!valid_utf8(key)) throw InputError(where_prefix(where) + "a key that is not valid UTF-8");
  bool ok = true;
  if (const auto* s = std::get_if<std::string>(&v)) ok = valid_utf8(*s);
  if (const auto* l = std::get_if<StringList>(&v))
    for (const auto& s : *l) ok = ok && valid_utf8(s);
  if (!ok) fail_key(where, key, "value is not valid UTF-8");
}

// Converts v to the spec's type or explains why not.
Value coerce(const KeySpec& spec, const Value& v, std::string_view where) {
  auto wrong = [&]() {
    fail_key(where, spec.key,
             "expected " + value_type_name(spec.type) + ", got " + std::string(type_of(v)) + " " + value_to_string(v));
  };
  Value out = v;
  check_finite(spec.key, v, where);
  switch (spec.type) {
    case T::Bool:
      if (!std::holds_alternative<bool>(v)) wrong();
      break;
    case T::Int:
      if (!std::holds_alternative<int64_t>(v)) wrong();
      break;
    case T::Float:
      if (std::holds_alternative<int64_t>(v))
        out = static_cast<double>(std::get<int64_t>(v));
      else if (!std::holds_alternative<double>(v))
        wrong();
      break;
    case T::String:
      if (!std::holds_alternative<std::string>(v)) wrong();
      break;
    case T::StringList:
      if (!std::holds_alternative<StringList>(v)) wrong();
      break;
    case T::Any:
      break;
  }
  if (!spec.choices.empty()) {
    const auto& s = std::get<std::string>(out);
    if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
      std::string allowed;
      for (const auto& c : spec.choices) allowed += (allowed.empty() ? "" : ", ") + quote(c);
      fail_key(where, spec.key, "value " + quote(s) + " is not one of " + allowed);
    }
  }
  return out;
}

std::string section_of(std::string_view key) {
  auto pos = key.rfind('.');
  return std::string(pos == std::string_view::npos ? std::string_view{} : key.substr(0, pos));
}

std::string node_where(const std::string& source, const toml::node& n) {
  const auto& src = n.source();
  if (!src.begin) return source;
  return source + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

Value from_toml_node(const std::string& key, const toml::node& n, const std::string& where) {
  if (auto b = n.as_boolean()) return b->get();
  if (auto i = n.as_integer()) return i->get();
  if (auto f = n.as_floating_point()) return f->get();
  if (auto s = n.as_string()) return s->get();
  if (auto a = n.as_array()) {
    StringList out;
    for (const auto& e : *a) {
      auto s = e.as_string();
      if (!s) fail_key(where, key, "only lists of strings are supported");
      out.push_back(s->get());
    }
    return out;
  }
  fail_key(where, key, "unsupported TOML value (dates and inline tables are not job-config values)");
}

void load_table(JobConfig& cfg, const toml::table& t, const std::string& prefix, const std::string& source) {
  for (const auto& [k, node] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    const std::string where = node_where(source, node);
    if (auto sub = node.as_table()) {
      load_table(cfg, *sub, key, source);
      continue;
    }
    cfg.set(key, from_toml_node(key, node, where), where);
  }
}

}  // namespace

const std::vector<KeySpec>& job_config_schema() {
  static const std::vector<KeySpec> schema = build_schema();
  return schema;
}

const KeySpec* find_key_spec(std::string_view key) {
  for (const auto& s : job_config_schema())
    if (s.key == key) return &s;
  return nullptr;
}

bool is_passthrough_key(std::string_view key) {
  if (find_key_spec(key)) return false;
  for (auto p : kPassthroughSections)
    if (key.substr(0, p.size()) == p && key.size() > p.size()) return true;
  return false;
}

bool feature_on(const JobConfig& config, const FeatureGate& gate) {
  const std::optional<Value> v = config.get(gate.key);
  if (!v) return false;
  if (const bool* b = std::get_if<bool>(&*v)) return *b;
  if (const auto* s = std::get_if<std::string>(&*v)) return *s == gate.value;
  if (const auto* l = std::get_if<StringList>(&*v)) return std::find(l->begin(), l->end(), gate.value) != l->end();
  return true;  // a switch of another type: counted as on, so its keys are checked
}

std::string feature_off_text(const FeatureGate& gate) {
  if (gate.value.empty()) return gate.key + " = false";
  const KeySpec* spec = find_key_spec(gate.key);
  if (spec && spec->type == T::StringList) return gate.key + " not listing " + quote(gate.value);
  return gate.key + " other than " + quote(gate.value);
}

std::string value_type_name(ValueType t) {
  switch (t) {
    case T::Bool:
      return "a boolean";
    case T::Int:
      return "an integer";
    case T::Float:
      return "a number";
    case T::String:
      return "a string";
    case T::StringList:
      return "a list of strings";
    case T::Any:
      return "any value";
  }
  return "?";
}

std::string value_to_string(const Value& v) {
  switch (v.index()) {
    case 0:
      return std::get<bool>(v) ? "true" : "false";
    case 1:
      return std::to_string(std::get<int64_t>(v));
    case 2:
      return format_double(std::get<double>(v));
    case 3:
      return quote(std::get<std::string>(v));
    default: {
      std::string out = "[";
      for (const auto& s : std::get<StringList>(v)) out += (out.size() > 1 ? ", " : "") + quote(s);
      return out + "]";
    }
  }
}

nlohmann::json value_to_json(const Value& v) {
  switch (v.index()) {
    case 0:
      return std::get<bool>(v);
    case 1:
      return std::get<int64_t>(v);
    case 2:
      return std::get<double>(v);
    case 3:
      return std::get<std::string>(v);
    default:
      return std::get<StringList>(v);
  }
}

Value value_from_json(std::string_view key, const nlohmann::json& j, std::string_view where) {
  Value v;
  if (j.is_boolean())
    v = j.get<bool>();
  else if (j.is_number_integer())
    v = j.get<int64_t>();
  else if (j.is_number())
    v = j.get<double>();
  else if (j.is_string())
    v = j.get<std::string>();
  else if (j.is_array() && std::all_of(j.begin(), j.end(), [](const auto& e) { return e.is_string(); }))
    v = j.get<StringList>();
  else
    fail_key(where, key, "unsupported JSON value " + j.dump());
  if (const KeySpec* spec = find_key_spec(key)) return coerce(*spec, v, where);
  return v;
}

JobConfig JobConfig::from_toml_file(const std::string& path) {
  // A directory reads as empty (all defaults) and a FIFO or device blocks
  // or never ends: only a regular file is a config.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw InputError(path + ": cannot read file: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw InputError(path + ": not a regular file (" +
                     (S_ISDIR(st.st_mode)    ? "a directory"
                      : S_ISFIFO(st.st_mode) ? "a FIFO"
                      : S_ISCHR(st.st_mode)  ? "a character device"
                                             : "not a file") +
                     ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read file");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_toml_string(ss.str(), path);
}

JobConfig JobConfig::from_toml_string(std::string_view text, const std::string& source_name) {
  reject_toml_control_characters(text, source_name);
  toml::table t;
  try {
    t = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw InputError(source_name + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column) +
                     ": TOML syntax error: " + std::string(e.description()));
  }
  JobConfig cfg;
  load_table(cfg, t, "", source_name);
  return cfg;
}

void JobConfig::set(const std::string& key, const Value& v, std::string_view where) {
  check_utf8(key, v, where);
  const KeySpec* spec = find_key_spec(key);
  if (!spec && !is_passthrough_key(key)) fail_key(where, key, unknown_key_reason(key));
  Value checked = v;
  if (spec)
    checked = coerce(*spec, v, where);
  else
    check_finite(key, v, where);
  // A key that is both a value and a table ("quantize.a" and "quantize.a.b",
  // or a passthrough "quantize.linear" beside a schema key under it) has no
  // TOML form. Two schema keys never clash.
  auto is_table_of = [](const std::string& table, const std::string& k) {
    return k.size() > table.size() && k.compare(0, table.size(), table) == 0 && k[table.size()] == '.';
  };
  for (const auto& [other, ov] : values_)
    if ((!spec || !find_key_spec(other)) && (is_table_of(other, key) || is_table_of(key, other)))
      fail_key(where, key, "conflicts with key '" + other + "' (a key cannot be both a value and a table)");
  values_[key] = std::move(checked);
}

void JobConfig::set_from_string(const std::string& key, std::string_view text, std::string_view where) {
  const KeySpec* spec = find_key_spec(key);
  if (!spec && !is_passthrough_key(key)) fail_key(where, key, unknown_key_reason(key));
  const T type = spec ? spec->type : T::String;
  const std::string s(text);
  auto bad = [&]() { fail_key(where, key, "cannot read " + quote(s) + " as " + value_type_name(type)); };
  switch (type) {
    case T::Bool:
      if (s == "true" || s == "True" || s == "1") return set(key, true, where);
      if (s == "false" || s == "False" || s == "0") return set(key, false, where);
      bad();
      return;
    case T::Int: {
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || errno == ERANGE) bad();
      return set(key, static_cast<int64_t>(v), where);
    }
    case T::Float: {
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0') bad();
      return set(key, v, where);
    }
    case T::StringList: {
      StringList out;
      std::stringstream ss(s);
      std::string item;
      while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
      return set(key, out, where);
    }
    case T::String:
    case T::Any:
      return set(key, s, where);
  }
}

void JobConfig::apply_cli(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const std::string where = "argument " + std::to_string(i + 1) + " '" + a + "'";
    if (a.rfind("--", 0) != 0 || a.size() < 3) throw InputError(where + ": expected --section.key [value]");
    std::string key = a.substr(2);
    std::optional<std::string> value;
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    const KeySpec* spec = find_key_spec(key);
    if (!spec) {
      // --section.no-flag sets a boolean to false.
      auto dot = key.rfind('.');
      if (dot != std::string::npos && key.compare(dot + 1, 3, "no-") == 0) {
        std::string positive = key.substr(0, dot + 1) + key.substr(dot + 4);
        const KeySpec* ps = find_key_spec(positive);
        if (ps && ps->type == T::Bool && !value) {
          set(positive, false, where);
          continue;
        }
      }
      std::replace(key.begin(), key.end(), '-', '_');
      spec = find_key_spec(key);
    }
    if (!spec && !is_passthrough_key(key)) fail_key(where, key, unknown_key_reason(key));
    if (spec && spec->type == T::Bool && !value) {
      set(key, true, where);
      continue;
    }
    if (!value) {
      if (i + 1 >= args.size()) fail_key(where, key, "missing value");
      value = args[++i];
    }
    set_from_string(key, *value, where);
  }
}

void JobConfig::merge(const JobConfig& over) {
  for (const auto& [k, v] : over.values_) values_[k] = v;
}

void JobConfig::erase(const std::string& key) { values_.erase(key); }

bool JobConfig::has(std::string_view key) const { return values_.find(key) != values_.end(); }

std::optional<Value> JobConfig::get(std::string_view key) const {
  if (auto it = values_.find(key); it != values_.end()) return it->second;
  if (const KeySpec* spec = find_key_spec(key)) return spec->default_value;
  return std::nullopt;
}

namespace {
template <typename V>
V typed(const JobConfig& c, std::string_view key, const char* what) {
  auto v = c.get(key);
  if (!v) throw InputError("key '" + std::string(key) + "': no value set (default is None)");
  if (!std::holds_alternative<V>(*v))
    throw InputError("key '" + std::string(key) + "': expected " + what + ", got " + value_to_string(*v));
  return std::get<V>(*v);
}
}  // namespace

bool JobConfig::get_bool(std::string_view key) const { return typed<bool>(*this, key, "a boolean"); }
int64_t JobConfig::get_int(std::string_view key) const { return typed<int64_t>(*this, key, "an integer"); }
double JobConfig::get_float(std::string_view key) const {
  auto v = get(key);
  if (v && std::holds_alternative<int64_t>(*v)) return static_cast<double>(std::get<int64_t>(*v));
  return typed<double>(*this, key, "a number");
}
std::string JobConfig::get_string(std::string_view key) const { return typed<std::string>(*this, key, "a string"); }
StringList JobConfig::get_list(std::string_view key) const { return typed<StringList>(*this, key, "a list"); }

std::string JobConfig::to_toml() const {
  // Order: schema order for known keys, then passthrough keys alphabetically.
  std::vector<std::pair<std::string, const Value*>> ordered;
  for (const auto& spec : job_config_schema())
    if (auto it = values_.find(spec.key); it != values_.end()) ordered.emplace_back(spec.key, &it->second);
  for (const auto& [key, v] : values_)
    if (!find_key_spec(key)) ordered.emplace_back(key, &v);
  // Group by section, sections in order of first appearance.
  std::vector<std::string> sections;
  for (const auto& [key, v] : ordered) {
    std::string s = section_of(key);
    if (std::find(sections.begin(), sections.end(), s) == sections.end()) sections.push_back(s);
  }
  std::string out;
  for (const auto& s : sections) {
    if (!out.empty()) out += "\n";
    if (!s.empty()) out += "[" + toml_dotted_key(s) + "]\n";
    for (const auto& [key, v] : ordered) {
      if (section_of(key) != s) continue;
      out += toml_key_part(std::string_view(key).substr(s.empty() ? 0 : s.size() + 1)) + " = " + value_to_string(*v) +
             "\n";
    }
  }
  return out;
}

nlohmann::json JobConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, value] : values_) j[key] = value_to_json(value);
  return j;
}

JobConfig JobConfig::from_json(const nlohmann::json& j, std::string_view where) {
  if (!j.is_object()) throw InputError(where_prefix(where) + "expected a JSON object of job-config keys");
  JobConfig c;
  for (const auto& [key, value] : j.items()) c.set(key, value_from_json(key, value, where), where);
  return c;
}

std::vector<std::string> JobConfig::to_cli() const {
  std::vector<std::string> out;
  for (const auto& [key, v] : values_) {
    if (std::holds_alternative<bool>(v)) {
      auto dot = key.rfind('.');
      out.push_back(std::get<bool>(v) ? "--" + key : "--" + key.substr(0, dot + 1) + "no-" + key.substr(dot + 1));
      continue;
    }
    out.push_back("--" + key);
    if (std::holds_alternative<StringList>(v)) {
      std::string joined;
      for (const auto& s : std::get<StringList>(v)) joined += (joined.empty() ? "" : ",") + s;
      out.push_back(joined);
    } else if (std::holds_alternative<std::string>(v)) {
      out.push_back(std::get<std::string>(v));
    } else {
      out.push_back(value_to_string(v));
    }
  }
  return out;
}

}  // namespace partune
