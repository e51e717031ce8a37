// The memory model's terms before calibration: what one rank of the embedded
// trainer allocates for a job config, counted from the flavor's shapes and
// the parallel degrees (docs/memory-model.md lists each term and what it
// counts). Pure arithmetic: no torch, no processes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "common/flavors.h"
#include "common/job_config.h"
#include "common/parallel_dims.h"
#include "tuner/estimate/memory_model.h"

namespace partune {

enum class AcKind { None, Selective, Full, PerOp };

// What the terms read from a job config, resolved.
struct MemoryShape {
  Flavor flavor;
  ParallelDims dims;  // dp_shard resolved
  int64_t local_batch_size = 1;
  int64_t seq_len = 1;
  AcKind ac = AcKind::None;
  int ac_every_n = 1;         // selective "N": block i checkpointed when (i + 1) % N == 0; 0: every block
  bool compile = false;       // compile.enable: the chunked loss and fused elementwise paths
  int64_t compute_bytes = 2;  // bf16 compute on CUDA; 4 for float32 (or the CPU)
  bool reshard_after_forward = true;
  bool adamw_for_loop = false;    // LibTorch's loop keeps per-tensor temporaries
  int64_t grad_accumulation = 1;  // microbatches per step
  // Logits and the output weight's rows sharded over TP: torchtitan's loss
  // parallel, and the embedded trainer's in the compiled memory mode when TP
  // divides the vocabulary (apply_loss_parallel). memory_shape sets it.
  bool loss_parallel = false;
  bool embeddings_over_tp = false;  // the embedding's and the output's rows over TP in any case (torchtitan)
};

// Reads a trial config for `world_size` ranks. nullopt when the flavor is not
// in the table; InputError naming the key for a value the terms cannot use
// (an illegal mesh, a selective option that is neither a number nor "op").
std::optional<MemoryShape> memory_shape(const JobConfig& config, int world_size, bool cuda);

// The terms in GiB for the rank with the largest total (all ranks of our
// layouts hold the same amounts up to padding and routing imbalance).
MemoryTerms embedded_memory_terms(const MemoryShape& shape);

// Blocks whose activations stay saved until backward, and blocks that run
// under checkpoint() (only their input is saved).
struct BlockSplit {
  int64_t saved = 0;
  int64_t checkpointed = 0;
};
BlockSplit block_split(const MemoryShape& shape);

}  // namespace partune
