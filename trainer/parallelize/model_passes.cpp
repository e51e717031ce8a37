#include "trainer/parallelize/model_passes.h"

namespace partune::trainer {

void apply_activation_checkpointing(Qwen3Model& model, const ACConfig& ac) {
  for (auto& block : model->layers()) block->ac = block_ac(ac, block->layer_id());
}

void apply_compile(Qwen3Model& model, bool enable, int64_t loss_chunk_tokens) {
  for (auto& block : model->layers()) {
    if (block->is_moe()) {
      block->moe->fused = enable;
      block->moe->experts->fused = enable;
    } else {
      block->feed_forward->fused = enable;
    }
  }
  model->chunked_loss = enable;
  model->loss_chunk_tokens = loss_chunk_tokens;
}

}  // namespace partune::trainer
