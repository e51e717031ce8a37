// The output projection and the cross-entropy loss, fused and in chunks of
// tokens: the memory-efficient counterpart of linear + cross_entropy_loss
// (model.h), used when compile.enable selects the compiled memory mode.
//
// The reference path holds the whole batch's logits in the compute dtype, an
// fp32 copy, the fp32 log-softmax that cross_entropy saves for backward and,
// in backward, two more fp32 [tokens, vocab] tensors: about 12 bytes per
// logit (18.5 GiB per fp32 copy at 32k tokens of a 151,936-token vocabulary).
// Here the loss is the last op of the forward, so its gradient with respect
// to the logits, (softmax - onehot) / valid tokens, is known in the forward:
// each chunk computes its logits, their softmax (accumulated in fp32, stored
// in the compute dtype), its part of the loss
// and, right away, its gradients with respect to the hidden states and the
// output weight. Nothing of size [tokens, vocab] outlives a chunk, and the
// backward only scales the stored gradients by the incoming one (no second
// pass over the 2 * dim * vocab matmuls).
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace partune::trainer {

// Tokens per chunk when the caller passes 0: chunks of about 2^30 logits
// (4 GiB for them and their softmax in bf16), at least 256 tokens.
int64_t default_loss_chunk_tokens(int64_t vocab_size);

// hidden [N, dim] (or [B, S, dim]) in the compute dtype; weight [vocab, dim]
// in any floating dtype (cast once to hidden's dtype); labels [N] (or [B, S])
// int64, -100 ignored. Returns the mean
// cross-entropy over the valid tokens, 0-dim in accum_dtype(hidden) (fp32,
// fp64 for fp64), equal to cross_entropy_loss(linear(hidden, weight), labels).
// Gradients flow to hidden (its dtype) and weight (its dtype, accumulated
// over chunks in fp32). chunk_tokens <= 0: default_loss_chunk_tokens.
torch::Tensor chunked_linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                           const torch::Tensor& labels, int64_t chunk_tokens = 0);

}  // namespace partune::trainer
