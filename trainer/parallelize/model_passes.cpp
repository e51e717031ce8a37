#include "trainer/parallelize/model_passes.h"

namespace partune::trainer {

void apply_activation_checkpointing(Qwen3Model& model, const ACConfig& ac) {
  for (auto& block : model->layers()) block->ac = block_ac(ac, block->layer_id());
}

void apply_compile(Qwen3Model& model, const CompileOptions& options) {
  for (auto& block : model->layers()) {
    for (auto* norm : {&block->attention_norm, &block->ffn_norm, &block->attention->q_norm, &block->attention->k_norm})
      if (!norm->is_empty()) (*norm)->fused = options.model;
    block->attention->fused = options.model;
    if (block->is_moe()) {
      block->moe->fused = options.model;
      block->moe->experts->fused = options.model;
    } else {
      block->feed_forward->fused = options.model;
    }
  }
  model->norm->fused = options.model;
  model->chunked_loss = options.loss;
  model->loss_chunk_tokens = options.loss_chunk_tokens;
}

}  // namespace partune::trainer
