// The output projection and the cross-entropy loss, fused, optionally in
// chunks of tokens: the counterpart of linear + cross_entropy_loss (model.h)
// used when compile.enable selects the compiled memory mode.
//
// The reference path holds the whole batch's logits in the compute dtype, an
// fp32 copy, the fp32 log-softmax that cross_entropy saves for backward and,
// in backward, two more fp32 [tokens, vocab] tensors: about 14 bytes per
// logit (18.5 GiB per fp32 copy at 32k tokens of a 151,936-token vocabulary).
// Here the loss is the last op of the forward, so its gradient with respect
// to the logits, (softmax - onehot) / valid tokens, is known in the forward:
// each chunk computes its logits, their softmax (accumulated in fp32, stored
// in the compute dtype), its part of the loss
// and, right away, its gradients with respect to the hidden states and the
// output weight. No fp32 [tokens, vocab] tensor exists, and the backward
// only scales the stored gradients by the incoming one (no second pass over
// the 2 * dim * vocab matmuls).
//
// By default the whole batch is one chunk: 2 bytes x 2 per logit in bf16
// (the logits and their softmax), the memory compiled torchtitan needs at
// its loss. Its output layer runs outside the compiled blocks, so its bf16
// logits exist whole, and its compiled loss (which fuses the fp32 upcast)
// saves them and writes a bf16 gradient of the same size in backward. The
// tuner must see production's peak, so the default does not chunk; smaller
// chunks (the trainer's --loss-chunk-tokens) hold less than torchtitan will.
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "trainer/model/hooks.h"

namespace partune::trainer {

// hidden [N, dim] (or [B, S, dim]) in the compute dtype; weight [vocab, dim]
// in any floating dtype (cast once to hidden's dtype); labels [N] (or [B, S])
// int64, -100 ignored. Returns the mean
// cross-entropy over the valid tokens, 0-dim in accum_dtype(hidden) (fp32,
// fp64 for fp64), equal to cross_entropy_loss(linear(hidden, weight), labels).
// Gradients flow to hidden (its dtype) and weight (its dtype, accumulated
// over chunks in fp32). chunk_tokens <= 0: one chunk for all tokens.
//
// With `vocab` active (loss parallel), weight is this rank's rows of the
// output weight, labels index the whole vocabulary, and the result is the
// loss over the whole vocabulary on every rank. The gradient with respect
// to hidden is this rank's part of the sum over ranks: the caller passes
// hidden through vocab.enter_region, whose backward sums it. Per logit of
// its slice a rank holds what the one-rank loss holds per logit: the
// logits and their softmax in the compute dtype.
torch::Tensor chunked_linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                           const torch::Tensor& labels, int64_t chunk_tokens = 0,
                                           const LossParallelHooks& vocab = {});

}  // namespace partune::trainer
