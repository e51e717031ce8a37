// The Parser: turns what a trial prints (torchtitan, our trainer, or any
// command that imitates them) into step rows, warnings and a failure class,
// and reads the embedded trainer's JSON-lines metrics file into the same state.
//
// Accepted line forms (any combination): ANSI colour codes; launcher prefixes
// `[rank3]:`, `[default3]:` (torchrun --tee) or `3: ` (srun -l); the logging
// prefix `[titan] 2025-12-14 05:55:38,070 - root - INFO - `; thousands
// separators in numbers; loss with any number of decimals; right-aligned step.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tuner/trial/trial.h"

namespace partune {

struct ParsedLine {
  enum class Kind {
    Other,
    Step,          // `step: 1  loss: ...`            -> step
    AllocRetries,  // `N CUDA memory allocation retries.` (running count of the rank) -> count
    OomErrors,     // `N CUDA OOM errors thrown.` (running count of the rank)        -> count
    TrainerInit,   // `Trainer is initialized with local batch size ...`             -> init
    PeakFlops,     // `Peak FLOPS used for computing MFU: 9.890e+14`                 -> peak_flops
    Failure,       // OOM, NCCL error/timeout, traceback, killed rank, trainer error -> failure
  };
  Kind kind = Kind::Other;
  int rank = -1;  // from a launcher prefix; -1: none
  StepRow step;
  int64_t count = 0;
  FailureClass failure = FailureClass::None;
  // A step line whose values cannot be real (NaN, infinite, negative,
  // impossible; a step number past int64): Kind::Failure, failure Error, and
  // `message` says why. Never a step row.
  bool refused_step = false;
  std::string message;  // the line without prefixes and colour codes (set for every kind but Other)
  struct Init {
    // -1: absent from the line (older torchtitan prints fewer fields)
    int64_t lbs = -1, gbs = -1, grad_accum = -1, seq_len = -1, steps = -1, warmup = -1;
    // The embedded trainer's metrics init record only: seconds from process
    // start to the first step's start, and the host's peak resident memory.
    double startup_s = -1, host_peak_rss_gib = -1;
  } init;
  double peak_flops = 0;
};

// Parses one output line (without its newline; a trailing '\r' is ignored).
// Never throws; anything unrecognised is Kind::Other.
ParsedLine parse_log_line(std::string_view line);

// The line with ANSI escape sequences removed.
std::string strip_ansi(std::string_view line);

// Everything learnt from one trial's output and metrics file.
//
// Step table: one row per step, at most kMaxStepRows (later new step numbers
// are counted in dropped_step_rows(), not kept: a trainer printing a million
// step lines must not grow tune's memory). Rows come from rank 0 (or unprefixed lines);
// a step seen only on other ranks takes the lowest rank's row. memory_gib /
// memory_pct of a row are the maximum over every rank that logged the step.
// Allocation retries and OOM errors are running counts per rank: the total is
// the sum over ranks of the largest count seen for that rank.
// Failure: the first of the highest class seen, oom > nccl > (crash, error:
// whichever came first). After a traceback, the exception line that ends it
// ("torch.OutOfMemoryError: ...") becomes the failure message.
class TrialLogState {
 public:
  static constexpr size_t kMaxStepRows = 10000;
  static constexpr size_t kMaxRanks = 65536;  // ranks whose retry / OOM counts are kept

  // Feeds one output line. `default_rank` is the rank of lines without a
  // launcher prefix (the process index when each rank has its own pipe; -1:
  // unknown, counted as rank 0). Returns what the line was.
  ParsedLine feed(std::string_view line, int default_rank = -1);

  // Feeds one line of the embedded trainer's metrics file (JSON lines):
  //   {"type":"step","rank":0,"step":1,"loss":..,"grad_norm":..,"memory_gib":..,
  //    "memory_pct":..,"tps":..,"tflops":..,"mfu":..,"alloc_retries":N,"oom_errors":N}
  //   {"type":"init","rank":0,"local_batch_size":L,"global_batch_size":G,
  //    "gradient_accumulation_steps":A,"seq_len":S,"steps":T,"warmup_steps":W,"peak_flops":F,
  //    "startup_s":8.2,"host_peak_rss_gib":2.1}
  //   {"type":"event","name":"alloc_retries"|"oom_errors","count":N,"rank":r,"message":".."}
  //   {"type":"error","failure":"oom"|"nccl"|"crash"|"error","rank":r,"message":".."}
  // Every field but "type" (and "step" of a step, "failure" of an error) is
  // optional; "rank" defaults to 0. A line that is not such an object is counted
  // in malformed_metrics_lines() and skipped; blank lines are ignored.
  // A step whose values step_check.h refuses fails the trial (FailureClass::Error,
  // the message starting with `where`, e.g. "metrics-rank0.jsonl line 7").
  // Returns false for a malformed line.
  bool feed_metrics_json(std::string_view json_line, std::string_view where = {});

  // Medians of mfu / tps / tflops over steps > warmup_steps (each over the rows
  // that have it), peak memory over all steps, counted_steps = rows with
  // step > warmup_steps, total alloc retries and OOM errors.
  TrialMetrics summarize(int warmup_steps) const;

  // Rows in step order.
  std::vector<StepRow> steps() const;
  int64_t alloc_retries() const;
  int64_t oom_errors() const;
  FailureClass failure() const { return failure_; }
  const std::string& failure_message() const { return failure_message_; }
  int failure_rank() const { return failure_rank_; }
  bool has_init() const { return has_init_; }
  const ParsedLine::Init& init() const { return init_; }
  double peak_flops() const { return peak_flops_; }  // 0: not reported
  int64_t lines() const { return lines_; }
  int64_t dropped_step_rows() const { return dropped_step_rows_; }
  int64_t malformed_metrics_lines() const { return malformed_metrics_; }

 private:
  struct Row {
    StepRow row;
    int source_rank = 0;  // rank whose line gave the row's values
  };
  void add_step(const StepRow& step, int rank);
  void add_failure(FailureClass f, std::string message, int rank);
  void bump_count(std::map<int, int64_t>& by_rank, int rank, int64_t count);

  std::map<int64_t, Row> rows_;
  std::map<int, int64_t> retries_by_rank_;
  std::map<int, int64_t> ooms_by_rank_;
  FailureClass failure_ = FailureClass::None;
  std::string failure_message_;
  int failure_rank_ = -1;
  bool in_traceback_ = false;  // a traceback is the current failure; its exception line is awaited
  bool has_init_ = false;
  ParsedLine::Init init_;
  double peak_flops_ = 0;
  int64_t lines_ = 0;
  int64_t malformed_metrics_ = 0;
  int64_t dropped_step_rows_ = 0;
};

// The failure class of a finished trial: timeout, then hang (the launcher's
// verdicts); then the class the log shows; else a signal is a crash, an exit
// code above 128 (a shell's "killed by signal") a crash, any other non-zero
// exit an error. A clean exit with a clean log is None.
FailureClass classify_exit(int exit_code, int signal, bool timed_out, bool hung, const TrialLogState& log);

}  // namespace partune
