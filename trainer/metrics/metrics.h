// What the trainer reports, computed as torchtitan v0.2.2's MetricsProcessor
// computes it (docs/trainer.md, Output), printed as torchtitan
// prints it, and written as JSON lines for the tuner's embedded backend.
//
// Text (stdout, no logging prefix; colours only when stdout is a TTY):
//   Peak FLOPS used for computing MFU: 9.890e+14
//   CUDA capacity: <name> with <gib>GiB memory        (CPU: "... budget ...")
//   Trainer is initialized with local batch size L, global batch size G, gradient
//     accumulation steps A, sequence length S, total steps T (warmup W)
//   step: ...                                         (step 1 and every log_freq steps)
//   N CUDA memory allocation retries. / N CUDA OOM errors thrown.  (at a log, when N > 0)
//
// JSON lines ($PARTUNE_METRICS_DIR/metrics-rank<R>.jsonl), one object a line:
//   {"type":"init","local_batch_size":..,"global_batch_size":..,"gradient_accumulation_steps":..,
//    "gradient_accumulation_steps":..,"seq_len":..,"steps":..,"warmup_steps":..,"params":..,
//    "active_params":..,"flops_per_token":..,"peak_flops":..,"device":"..","world_size":..,"rank":..,
//    "local_params":..,"startup_s":..,"host_peak_rss_gib":..}
//        local_params: elements of this rank's parameter shards; startup_s: seconds from this process's
//        start to the first step; host_peak_rss_gib: this rank's peak resident set (VmHWM) by then, GiB
//   Startup: 8.21 s to the first step, host peak RSS 2.10 GiB    (text, rank 0, right before step 1)
//   {"type":"step","rank":0,"step":1,"loss":..,"grad_norm":..,"memory_gib":..,"memory_pct":..,
//    "tps":..,"tflops":..,"mfu":..,"alloc_retries":N,"oom_errors":N,"saved_gib":..}
//        saved_gib: what the step's first microbatch kept from its forward's start to its loss
//        (CUDA; the CPU with PARTUNE_CPU_MEMORY=allocated); "emulated":true on an emulated rank
//   {"type":"event","name":"alloc_retries"|"oom_errors","count":N,"rank":r,"message":".."}  (when N grows)
//   {"type":"error","failure":"oom"|"error","rank":r,"message":".."}
#pragma once
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <ostream>
#include <string>

#include "trainer/metrics/device_memory.h"
#include "trainer/metrics/startup.h"
#include "trainer/metrics/step_line.h"

namespace partune::trainer {

// The JSON-lines file; opened on the first write, flushed after every line.
// Without a directory it writes nothing.
class MetricsFile {
 public:
  MetricsFile(std::optional<std::string> dir, int rank);
  // $PARTUNE_METRICS_DIR, or none.
  static MetricsFile from_env(int rank);
  void write(const nlohmann::json& record);
  void error(const std::string& failure, const std::string& message);  // an {"type":"error"} record
  int rank() const { return rank_; }
  bool enabled() const { return dir_.has_value(); }

 private:
  std::optional<std::string> dir_;
  int rank_;
  std::ofstream out_;
};

// The peak FLOP/s used for MFU: $PARTUNE_PEAK_FLOPS when set, else
// torchtitan's table by device name, else torchtitan's fallback (A100,
// 312e12) with its warning appended to `warning`.
double resolve_peak_flops(const std::string& device_name, std::string* warning);

struct MetricsSetup {
  int64_t local_batch_size = 0, global_batch_size = 0, grad_accum_steps = 0, seq_len = 0, steps = 0;
  int64_t warmup_steps = 0;
  int64_t params = 0, active_params = 0;
  double flops_per_token = 0;
  int64_t log_freq = 10;
  int64_t non_data_parallel_size = 1;  // cp * tp * pp
  int world_size = 1, rank = 0;
  // The text lines (init, step) come from one rank (rank 0); every rank
  // prints its allocator warnings and writes its own JSON lines.
  bool print_lines = true;
  // The emulated rank (--emulate-world): its step line ends in
  // "  emulated: R/N" and its JSON records carry "emulated": true, since its
  // loss, norm and step time are not the real run's.
  bool emulated = false;
};

// Turns this rank's memory statistics into the step line's (a collective:
// the maximum over ranks, since a trial fails if any rank runs out).
using MemoryReducer = std::function<DeviceMemStats(const DeviceMemStats&)>;

class MetricsProcessor {
 public:
  MetricsProcessor(const MetricsSetup& setup, DeviceMemoryMonitor& memory, MetricsFile& file, std::ostream& out,
                   bool color);

  // The start-up lines (peak FLOPS, capacity, "Trainer is initialized ...",
  // "Startup: ...") and the JSON init record, with `startup` measured just
  // before the first step.
  void log_init(const StartupStats& startup);
  bool should_log(int64_t step) const { return step == 1 || step % setup_.log_freq == 0; }
  void add_tokens(int64_t n) { ntokens_since_last_log_ += n; }
  // Starts the clock and the memory peak over (torchtitan does this when
  // the processor is built; here just before the first step).
  void start();
  // Computes, prints and writes one step's metrics; resets the counters.
  StepLine log(int64_t step, double loss, double grad_norm);

  double peak_flops() const { return peak_flops_; }
  void set_memory_reducer(MemoryReducer r) { reduce_memory_ = std::move(r); }
  // Bytes the step's first microbatch kept from the start of its forward to
  // its loss (what backward will need), for the next log's JSON record
  // ("saved_gib"); negative when the device does not count them.
  void set_saved_bytes(double bytes) { saved_bytes_ = bytes; }
  // Parameter elements this rank holds (its shards; padding included), for the init record.
  void set_local_params(int64_t n) { local_params_ = n; }
  // The TP degree the output layer's vocabulary is split over (loss parallel); 1: none.
  void set_loss_parallel(int64_t tp) { loss_parallel_ = tp; }

 private:
  MetricsSetup setup_;
  DeviceMemoryMonitor& memory_;
  MetricsFile& file_;
  std::ostream& out_;
  bool color_;
  double peak_flops_ = 0;
  std::string peak_warning_;
  int64_t ntokens_since_last_log_ = 0;
  std::chrono::steady_clock::time_point time_last_log_;
  int64_t last_retries_ = 0, last_ooms_ = 0;
  MemoryReducer reduce_memory_;
  int64_t local_params_ = -1;  // -1: not set
  int64_t loss_parallel_ = 1;
  double saved_bytes_ = -1;  // -1: not counted
};

}  // namespace partune::trainer
