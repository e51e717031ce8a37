// Tokens per chunk of the embedded trainer's chunked output + loss (its
// compiled memory mode): 2^28 logits (1 GiB in fp32) per chunk, at least 256
// tokens. One definition, shared by the trainer and the tuner's memory model.
#pragma once
#include <algorithm>
#include <cstdint>

namespace partune {

inline int64_t loss_chunk_tokens(int64_t vocab_size) {
  return std::max<int64_t>(256, (int64_t{1} << 28) / std::max<int64_t>(1, vocab_size));
}

}  // namespace partune
