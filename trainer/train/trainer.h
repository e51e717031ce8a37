// The training loop of the embedded trainer (torchtitan v0.2.2 train.py,
// Trainer.train_step). One process per device; with more than one, the model
// is parallelised by trainer/parallelize's passes, each data-parallel rank
// reads its rows of the global batch, the loss is the global mean and the
// gradient norm the global norm (over shards, replicas counted once):
//
//   for step in 1..steps:
//     zero grads; lr = base_lr * schedule(step - 1)
//     for each of grad_accum_steps microbatches:      inputs, labels [lbs, seq_len] int64
//       logits = model(inputs)                        [lbs, seq_len, vocab] fp32
//       loss   = mean CE * valid_mb / valid_total     (local sum / global valid tokens)
//       loss.backward()
//     (parallel: partial TP sums, dp_replicate all-reduce; loss all-reduced over the loss mesh)
//     grad_norm = total L2 norm of all grads (pre-clip); clip to max_norm
//     MoE: update expert biases                       (torchtitan: optimizer pre-step hook)
//     AdamW step
//     log at step 1 and every log_freq steps
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <vector>

#include "trainer/config/trainer_config.h"
#include "trainer/data/dataset.h"
#include "trainer/metrics/metrics.h"
#include "trainer/model/model.h"
#include "trainer/parallel/distributed.h"
#include "trainer/parallelize/parallelize.h"
#include "trainer/train/lr_schedule.h"
#include "trainer/train/optimizer.h"
#include "trainer/train/profiler.h"

namespace partune::trainer {

// Where training runs: --device, else $PARTUNE_DEVICE_TYPE, else CUDA when
// available (device LOCAL_RANK), else the CPU. Throws when CUDA is asked for
// and missing.
torch::Device resolve_device(const TrainerConfig& cfg, int local_rank = 0);

// bf16 on CUDA when training.mixed_precision_param is bfloat16; fp32 otherwise
// (the CPU always computes in fp32).
torch::Dtype compute_dtype_for(const TrainerConfig& cfg, torch::Device device);

// The data source a config asks for: data-parallel rank `part` of `parts`
// reads its local_batch_size rows of each global microbatch.
std::unique_ptr<Dataset> make_dataset(const TrainerConfig& cfg, int64_t part = 0, int64_t parts = 1);

struct StepResult {
  int64_t step = 0;
  torch::Tensor loss;       // 0-dim fp64: sum over microbatches of local loss sum / global valid tokens
  torch::Tensor grad_norm;  // 0-dim fp32, pre-clip
  double lr = 0;            // the lr this step used
  int64_t tokens = 0;       // labels this step consumed
  double loss_value() const { return loss.item<double>(); }
  double grad_norm_value() const { return grad_norm.item<double>(); }
};

class Trainer {
 public:
  // Builds the data, the model (this rank's shards, drawn from debug.seed
  // on `device`), AdamW and the schedule. `out` receives the text lines; `file` the JSON lines. `dist`:
  // the process groups' world when more than one process trains (it must
  // outlive the trainer); null for one process.
  Trainer(const TrainerConfig& cfg, torch::Device device, std::ostream& out, MetricsFile& file, bool color = false,
          Distributed* dist = nullptr);

  // Prints the start-up lines (notes, schedule warnings, init line, the
  // start-up time and host memory) and writes the init record: call it right
  // before train(), so that startup_s ends where the first step begins.
  void log_init();
  // One optimizer step (accumulating over microbatches). Does not log.
  StepResult train_step();
  // Every remaining step, logging at step 1 and every log_freq steps. With
  // more than one process a watchdog ends this rank when a step takes longer
  // than comm.init_timeout_seconds (the first) or comm.train_timeout_seconds.
  void train();

  Qwen3Model& model() { return model_; }
  const LRSchedule& schedule() const { return schedule_; }
  int64_t step() const { return step_; }

 private:
  TrainerConfig cfg_;
  torch::Device device_;
  std::ostream& out_;
  std::unique_ptr<Dataset> data_;
  Distributed* dist_ = nullptr;            // null for one process
  std::unique_ptr<Distributed> own_dist_;  // one process: a world of one
  Qwen3Model model_{nullptr};
  std::shared_ptr<ParallelModelState> parallel_;
  std::unique_ptr<AdamW> optimizer_;
  std::vector<std::string> schedule_warnings_;
  LRSchedule schedule_;
  DeviceMemoryMonitor memory_;
  MetricsProcessor metrics_;
  int64_t step_ = 0;
  std::unique_ptr<StepProfiler> profiler_;  // [profiling] on: made by train()
};

}  // namespace partune::trainer
