#include "trainer/metrics/metrics.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/flops.h"

namespace partune::trainer {

MetricsFile::MetricsFile(std::optional<std::string> dir, int rank) : dir_(std::move(dir)), rank_(rank) {}

MetricsFile MetricsFile::from_env(int rank) {
  const char* d = std::getenv("PARTUNE_METRICS_DIR");
  if (d == nullptr || *d == '\0') return MetricsFile(std::nullopt, rank);
  return MetricsFile(std::string(d), rank);
}

void MetricsFile::write(const nlohmann::json& record) {
  if (!dir_) return;
  if (!out_.is_open()) {
    std::error_code ec;
    std::filesystem::create_directories(*dir_, ec);
    const auto path = std::filesystem::path(*dir_) / ("metrics-rank" + std::to_string(rank_) + ".jsonl");
    out_.open(path, std::ios::out | std::ios::trunc);
    if (!out_) throw std::runtime_error("cannot write the metrics file " + path.string());
  }
  out_ << record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  out_.flush();
}

void MetricsFile::error(const std::string& failure, const std::string& message) {
  write({{"type", "error"}, {"failure", failure}, {"rank", rank_}, {"message", message}});
}

double resolve_peak_flops(const std::string& device_name, std::string* warning) {
  if (const char* env = std::getenv("PARTUNE_PEAK_FLOPS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end == env || *end != '\0' || !(v > 0))
      throw InputError("PARTUNE_PEAK_FLOPS='" + std::string(env) + "': must be a positive number of FLOP/s");
    return v;
  }
  if (auto p = peak_flops_for_device(device_name)) return *p;
  if (warning) *warning = "Peak flops undefined for: " + device_name + ", fallback to A100";
  return 312e12;  // torchtitan's fallback
}

MetricsProcessor::MetricsProcessor(const MetricsSetup& setup, DeviceMemoryMonitor& memory, MetricsFile& file,
                                   std::ostream& out, bool color)
    : setup_(setup), memory_(memory), file_(file), out_(out), color_(color) {
  peak_flops_ = resolve_peak_flops(memory_.device_name(), &peak_warning_);
  time_last_log_ = std::chrono::steady_clock::now();
}

void MetricsProcessor::log_init(const StartupStats& startup) {
  char buf[256];
  std::ostringstream discard;
  std::ostream& text = setup_.print_lines ? out_ : discard;
  const std::string type_upper = memory_.device_type() == "cuda" ? "CUDA" : "CPU";
  const double cap_gib = DeviceMemoryMonitor::to_gib(memory_.capacity_bytes());
  if (memory_.device_type() == "cuda") {
    std::snprintf(buf, sizeof buf, "%.2f", cap_gib);
    text << type_upper << " capacity: " << memory_.device_name() << " with " << buf << "GiB memory\n";
  } else {
    std::snprintf(buf, sizeof buf, "%.2f", cap_gib);
    text << "CPU capacity: " << memory_.device_name() << " with a " << buf << "GiB memory budget (from "
         << memory_.capacity_source()
         << "); memory is the process's peak resident set size so far (VmHWM, which cannot be reset)\n";
  }
  if (!peak_warning_.empty()) text << peak_warning_ << '\n';
  std::snprintf(buf, sizeof buf, "%.3e", peak_flops_);
  text << "Peak FLOPS used for computing MFU: " << buf << '\n';
  text << "Trainer is initialized with local batch size " << setup_.local_batch_size << ", global batch size "
       << setup_.global_batch_size << ", gradient accumulation steps " << setup_.grad_accum_steps
       << ", sequence length " << setup_.seq_len << ", total steps " << setup_.steps << " (warmup "
       << setup_.warmup_steps << ")\n";
  std::snprintf(buf, sizeof buf, "Startup: %.2f s to the first step, host peak RSS %.2f GiB", startup.startup_s,
                startup.host_peak_rss_gib);
  text << buf << '\n';
  if (setup_.emulated)
    text << "Emulated rank " << setup_.rank << " of " << setup_.world_size
         << ": collectives move no data and routing is balanced; memory is this rank's, step time its compute "
            "without communication, loss and grad_norm its own\n";
  text.flush();
  nlohmann::json init{{"type", "init"},
                      {"local_batch_size", setup_.local_batch_size},
                      {"global_batch_size", setup_.global_batch_size},
                      {"gradient_accumulation_steps", setup_.grad_accum_steps},
                      {"seq_len", setup_.seq_len},
                      {"steps", setup_.steps},
                      {"warmup_steps", setup_.warmup_steps},
                      {"params", setup_.params},
                      {"active_params", setup_.active_params},
                      {"flops_per_token", setup_.flops_per_token},
                      {"peak_flops", peak_flops_},
                      {"device", memory_.device_name()},
                      {"world_size", setup_.world_size},
                      {"rank", setup_.rank}};
  if (local_params_ >= 0) init["local_params"] = local_params_;
  if (loss_parallel_ > 1) init["loss_parallel"] = loss_parallel_;
  if (setup_.emulated) init["emulated"] = true;
  init["startup_s"] = startup.startup_s;
  init["host_peak_rss_gib"] = startup.host_peak_rss_gib;
  file_.write(init);
}

void MetricsProcessor::start() {
  ntokens_since_last_log_ = 0;
  memory_.reset_peak_stats();
  time_last_log_ = std::chrono::steady_clock::now();
}

StepLine MetricsProcessor::log(int64_t step, double loss, double grad_norm) {
  const auto now = std::chrono::steady_clock::now();
  const double time_delta = std::chrono::duration<double>(now - time_last_log_).count();
  StepLine s;
  s.step = step;
  s.loss = loss;
  s.grad_norm = grad_norm;
  // tokens per second per device of the non-data-parallel group
  s.tps =
      static_cast<double>(ntokens_since_last_log_) / (time_delta * static_cast<double>(setup_.non_data_parallel_size));
  s.mfu = 100.0 * setup_.flops_per_token * s.tps / peak_flops_;
  s.tflops = setup_.flops_per_token * s.tps / 1e12;
  const DeviceMemStats mem = memory_.peak_stats();
  // The line shows the reduced (maximum over ranks) memory; the JSON line this rank's own.
  const DeviceMemStats shown = reduce_memory_ ? reduce_memory_(mem) : mem;
  s.memory_gib = DeviceMemoryMonitor::to_gib(shown.max_reserved_bytes);
  s.memory_pct = memory_.to_pct(shown.max_reserved_bytes);

  const std::string type_upper = memory_.device_type() == "cuda" ? "CUDA" : "CPU";
  // torchtitan warns at every log while the counters are non-zero.
  if (mem.num_alloc_retries > 0) out_ << mem.num_alloc_retries << ' ' << type_upper << " memory allocation retries.\n";
  if (mem.num_ooms > 0) out_ << mem.num_ooms << ' ' << type_upper << " OOM errors thrown.\n";
  if (setup_.print_lines) {
    out_ << format_step_line(s, color_);
    if (setup_.emulated) out_ << "  emulated: " << setup_.rank << '/' << setup_.world_size;
    out_ << '\n';
  }
  out_.flush();

  nlohmann::json step_record{{"type", "step"},
                             {"rank", setup_.rank},
                             {"step", step},
                             {"loss", loss},
                             {"grad_norm", grad_norm},
                             {"memory_gib", DeviceMemoryMonitor::to_gib(mem.max_reserved_bytes)},
                             {"memory_pct", memory_.to_pct(mem.max_reserved_bytes)},
                             {"tps", s.tps},
                             {"tflops", s.tflops},
                             {"mfu", s.mfu},
                             {"alloc_retries", mem.num_alloc_retries},
                             {"oom_errors", mem.num_ooms}};
  if (saved_bytes_ >= 0) step_record["saved_gib"] = DeviceMemoryMonitor::to_gib(saved_bytes_);
  if (setup_.emulated) step_record["emulated"] = true;
  file_.write(step_record);
  if (mem.num_alloc_retries > last_retries_)
    file_.write(
        {{"type", "event"},
         {"name", "alloc_retries"},
         {"count", mem.num_alloc_retries},
         {"rank", setup_.rank},
         {"message", std::to_string(mem.num_alloc_retries) + " " + type_upper + " memory allocation retries."}});
  if (mem.num_ooms > last_ooms_)
    file_.write({{"type", "event"},
                 {"name", "oom_errors"},
                 {"count", mem.num_ooms},
                 {"rank", setup_.rank},
                 {"message", std::to_string(mem.num_ooms) + " " + type_upper + " OOM errors thrown."}});
  last_retries_ = mem.num_alloc_retries;
  last_ooms_ = mem.num_ooms;

  ntokens_since_last_log_ = 0;
  time_last_log_ = std::chrono::steady_clock::now();
  memory_.reset_peak_stats();
  return s;
}

}  // namespace partune::trainer
