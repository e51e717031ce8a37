// torchtitan v0.2.2's [profiling] traces (torchtitan/tools/profiling.py) with
// LibTorch's Kineto profiler (torch/csrc/autograd/profiler_kineto.h).
//
// The schedule is torch.profiler.schedule(wait = freq - (warmup + active),
// warmup, active) repeated for ever: profiler step s (0-based; training step
// s + 1 on a fresh run) is, at s mod freq,
//
//   [0, wait)                 Wait           profiler off
//   [wait, wait + warmup)     Warmup         prepared (Kineto warms up, records nothing)
//   [wait + warmup, freq - 1) Record         recording
//   freq - 1                  RecordAndSave  recording; the cycle's trace is written when it ends
//
// and each step() moves to the next profiler step as torch.profiler.profile
// does. A cycle's trace is written when the training step with s + 1 a
// multiple of freq ends, to
//
//   <job.dump_folder>/<save_traces_folder>/iteration_<N>/rank<R>_trace.json
//
// where N counts the profiler steps so far (the training step just finished on
// a fresh run) and R is the global rank: every rank writes its own trace.
// finish() (the profiler's exit) writes a cycle that training cut short while
// recording, as iteration_<last step>. One deviation from torch: when that
// exit trace would hold no training step and land on a trace this run already
// wrote (freq == warmup + active makes the last step() start a new cycle), the
// earlier trace is kept instead of being overwritten by an empty one.
//
// Recorded: CPU operators with their input shapes (torchtitan's
// record_shapes=True), plus CUDA kernels when training on CUDA. LibTorch
// builds without Kineto (Debian's 1.13) record the operators but cannot save
// a Kineto trace; there the trace is written from the profiler's event list
// instead (Chrome trace format, CPU operators only) and a note says so.
#pragma once
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "trainer/config/trainer_config.h"

namespace partune::trainer {

enum class ProfilerPhase { Wait, Warmup, Record, RecordAndSave };

// torch.profiler.schedule's action at 0-based profiler step s >= 0.
ProfilerPhase profiler_phase(const ProfilingConfig& cfg, int64_t s);

// <traces_folder>/iteration_<step>/rank<rank>_trace.json
std::string profiler_trace_path(const ProfilingConfig& cfg, int64_t step, int rank);

class StepProfiler {
 public:
  // Creates the traces folder (InputError naming profiling.save_traces_folder
  // when it cannot) and enters profiler step 0, preparing or starting the
  // profiler when the schedule says so (std::runtime_error when it fails).
  // `global_step`: training steps already done (torchtitan's global_step: the
  // first phase is still step 0's, later ones count from here). `cuda`: trace
  // CUDA kernels too. `log`: where to print what was written (rank 0), or null.
  StepProfiler(const ProfilingConfig& cfg, int rank, bool cuda, int64_t global_step, std::ostream* log);
  // Stops a running profiler without writing anything; call finish() to write.
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  // After every training step: the next profiler step begins; writes the
  // cycle's trace when its last active step has ended. Throws
  // std::runtime_error naming the file when a trace cannot be written.
  void step();
  // At the end of training (or on its failure): stops the profiler, writing the
  // trace of a cycle that was recording. Idempotent.
  void finish();

  // The trace files written so far, in order.
  const std::vector<std::string>& written() const { return written_; }

 private:
  enum class State { Off, Prepared, On };
  void transit(ProfilerPhase from, std::optional<ProfilerPhase> to);  // nullopt: exit
  void prepare();
  void start();
  void stop(bool save);
  void abandon() noexcept;  // stops the profiler, writing nothing

  ProfilingConfig cfg_;
  int rank_;
  bool cuda_;
  std::ostream* log_;
  int64_t step_num_ = 0;  // torch.profiler's step_num
  ProfilerPhase phase_ = ProfilerPhase::Wait;
  State state_ = State::Off;
  bool finished_ = false;
  bool noted_event_list_ = false;
  std::optional<int64_t> last_saved_step_;
  std::vector<std::string> written_;
};

}  // namespace partune::trainer
