// The passes that choose how a built model runs, without changing its
// parameters or calling collectives (torchtitan v0.2.2's apply_ac and
// apply_compile): parallelize() runs them between expert parallelism and
// FSDP, and a one-process trainer runs them itself.
//
//   apply_activation_checkpointing  [activation_checkpoint]: each block's
//       BlockAC (none, whole-block recompute, per-op selective).
//   apply_compile  compile.enable: the compiled memory mode. torch.compile
//       is Python-only; its counterpart here keeps what a compiled graph
//       keeps, per compile.components: "model", fused elementwise functions
//       that save their inputs and recompute the rest (SwiGLU, the MoE
//       gate-weighted sum) and RMSNorm in the input's dtype on CUDA;
//       "loss", the output projection + loss fused in chunks of tokens.
//       Off: the eager composition (torchtitan without compile).
#pragma once
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/model/model.h"

namespace partune::trainer {

void apply_activation_checkpointing(Qwen3Model& model, const ACConfig& ac);
struct CompileOptions {
  bool model = false;             // fused elementwise in the blocks
  bool loss = false;              // fused output + loss
  int64_t loss_chunk_tokens = 0;  // tokens per chunk (0: the whole microbatch)
};
void apply_compile(Qwen3Model& model, const CompileOptions& options);

}  // namespace partune::trainer
