// Tokens per chunk of the embedded trainer's chunked output + loss (its
// compiled memory mode): 2^30 logits per chunk (its logits and their softmax,
// 4 GiB in bf16; fewer chunks means fewer passes over the fp32 [vocab, dim]
// weight-gradient accumulator: 1% of a 30B-A3B-L4 step on an H200 against
// 2^29), at least 256
// tokens. One definition, shared by the trainer and the tuner's memory model.
#pragma once
#include <algorithm>
#include <cstdint>

namespace partune {

inline int64_t loss_chunk_tokens(int64_t vocab_size) {
  return std::max<int64_t>(256, (int64_t{1} << 30) / std::max<int64_t>(1, vocab_size));
}

}  // namespace partune
