#include "common/job_values.h"

#include <charconv>
#include <cstdint>
#include <limits>

#include "common/flavors.h"

namespace partune {

namespace {

// Counts and sizes: positive, and small enough that products of a few of
// them (tokens per step, bytes per activation) stay far from int64 overflow.
constexpr int64_t kMaxCount = std::numeric_limits<int32_t>::max();

constexpr std::string_view kPositiveCounts[] = {
    "training.local_batch_size", "training.seq_len",           "training.steps",           "metrics.log_freq",
    "comm.init_timeout_seconds", "comm.train_timeout_seconds", "lr_scheduler.total_steps", "training.gc_freq",
};
constexpr std::string_view kNonNegativeInts[] = {"lr_scheduler.warmup_steps", "debug.seed"};
constexpr std::string_view kNonNegativeFloats[] = {"optimizer.lr", "optimizer.eps", "optimizer.weight_decay"};
constexpr std::string_view kUnitInterval[] = {"lr_scheduler.decay_ratio", "lr_scheduler.min_lr_factor"};
constexpr std::string_view kBetas[] = {"optimizer.beta1", "optimizer.beta2"};

template <size_t N>
bool one_of(const std::string_view (&keys)[N], std::string_view key) {
  for (auto k : keys)
    if (k == key) return true;
  return false;
}

std::string shown(const Value& v) { return value_to_string(v); }

// "<flavor>-L<n>" reduces a flavor's depth: n in [1, the flavor's layers].
std::optional<std::string> flavor_depth_problem(const std::string& name) {
  const auto pos = name.rfind("-L");
  if (pos == std::string::npos || pos + 2 >= name.size()) return std::nullopt;
  const std::string_view digits = std::string_view(name).substr(pos + 2);
  int64_t layers = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layers);
  if (ptr != digits.data() + digits.size() && ec == std::errc()) return std::nullopt;  // not "-L<digits>"
  const std::string base = name.substr(0, pos);
  auto flavor = find_flavor("qwen3", base);
  if (!flavor) return std::nullopt;  // the planner names unknown flavors
  if (ec != std::errc() || layers < 1 || layers > flavor->n_layers)
    return "\"" + name + "\": '-L<n>' reduces the depth of '" + base + "' (" + std::to_string(flavor->n_layers) +
           " layers): n must be in [1, " + std::to_string(flavor->n_layers) + "], got " + std::string(digits);
  return std::nullopt;
}

constexpr std::string_view kBookkeeping[] = {
    "job.config_file",
    "job.dump_folder",
    "job.description",
    "job.print_config",
    "job.save_config_file",
    "profiling.save_traces_folder",
    "profiling.save_memory_snapshot_folder",
    "metrics.enable_tensorboard",
    "metrics.disable_color_printing",
    "metrics.save_tb_folder",
    "metrics.save_for_all_ranks",
    "metrics.enable_wandb",
    "model.print_after_conversion",
    "checkpoint.folder",
    "comm.save_traces_folder",
    "comm.save_traces_file_prefix",
};

}  // namespace

bool is_bookkeeping_key(std::string_view key) { return one_of(kBookkeeping, key); }

std::optional<std::string> job_value_problem(std::string_view key, const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) {
    if (one_of(kPositiveCounts, key) && (*i < 1 || *i > kMaxCount))
      return "must be in [1, " + std::to_string(kMaxCount) + "], got " + shown(v);
    if (one_of(kNonNegativeInts, key) && *i < 0) return "must be >= 0, got " + shown(v);
    if (key == "training.global_batch_size" && (*i == 0 || *i < -1 || *i > kMaxCount))
      return "must be -1 (local batch size x data-parallel degree) or in [1, " + std::to_string(kMaxCount) + "], got " +
             shown(v);
  }
  if (const auto* d = std::get_if<double>(&v)) {
    if (one_of(kNonNegativeFloats, key) && !(*d >= 0)) return "must be >= 0, got " + shown(v);
    if (one_of(kUnitInterval, key) && !(*d >= 0 && *d <= 1)) return "must be in [0, 1], got " + shown(v);
    if (one_of(kBetas, key) && !(*d >= 0 && *d < 1)) return "must be in [0, 1), got " + shown(v);
    if (key == "training.max_norm" && !(*d > 0)) return "must be > 0, got " + shown(v);
  }
  if (const auto* s = std::get_if<std::string>(&v); s && key == "model.flavor") return flavor_depth_problem(*s);
  return std::nullopt;
}

}  // namespace partune
