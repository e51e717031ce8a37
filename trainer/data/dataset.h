// Training data for the embedded trainer: batches of token windows, no
// tokenizer and no network.
//
//   SyntheticTokens: every row is a walk on a sparse random Markov chain over
//     the vocabulary. Token v is followed by one of kSuccessors tokens,
//     succ(v, j) = hash(seed, v, j) mod vocab for j uniform in [0, kSuccessors);
//     the first token of a row is uniform. A model that learns the bigram
//     table reaches ~ln(kSuccessors) nats from ln(vocab), so the loss falls
//     quickly; the table needs no memory, so any vocabulary size works.
//   TokenFile: a flat file of little-endian uint32 token ids, no header (the
//     format is documented in docs/trainer.md). Rows are consecutive,
//     non-overlapping windows of seq_len + 1 tokens, as torchtitan's text
//     datasets cut their token buffer; the file is read again from the start
//     when it runs out.
//
// Both are deterministic: the same seed (synthetic) or file gives the same
// batches.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <string>

namespace partune::trainer {

struct Batch {
  torch::Tensor inputs;  // [lbs, seq_len] int64, window[:, :-1]
  torch::Tensor labels;  // [lbs, seq_len] int64, window[:, 1:]
};

// Splits [lbs, seq_len + 1] windows into inputs and labels.
Batch batch_from_windows(const torch::Tensor& windows);

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual Batch next() = 0;  // on the CPU
};

class SyntheticTokens : public Dataset {
 public:
  static constexpr int64_t kSuccessors = 4;
  SyntheticTokens(int64_t vocab_size, int64_t local_batch_size, int64_t seq_len, uint64_t seed);
  Batch next() override;
  // The chain's j-th successor of token v.
  int64_t successor(int64_t v, int64_t j) const;

 private:
  int64_t vocab_, lbs_, seq_len_;
  uint64_t seed_;
  std::mt19937_64 rng_;
};

class TokenFile : public Dataset {
 public:
  // Throws partune::InputError when the file cannot be read, its size is not
  // a multiple of 4, it holds fewer than seq_len + 1 tokens, or a token id is
  // >= vocab_size (checked as windows are read).
  TokenFile(const std::string& path, int64_t vocab_size, int64_t local_batch_size, int64_t seq_len);
  Batch next() override;
  int64_t num_tokens() const { return num_tokens_; }
  int64_t epochs_completed() const { return epochs_; }

 private:
  std::string path_;
  std::ifstream in_;
  int64_t vocab_, lbs_, seq_len_;
  int64_t num_tokens_ = 0;
  int64_t next_window_ = 0;  // index of the next window in the file
  int64_t epochs_ = 0;
};

// One data-parallel rank's share of a global batch: `inner` yields batches of
// lbs * parts rows (the whole data-parallel group's microbatch, as a
// one-process run with that batch size reads them); this yields rows
// [part * lbs, (part + 1) * lbs). Every rank reads the same global stream.
class RowSlice : public Dataset {
 public:
  RowSlice(std::unique_ptr<Dataset> inner, int64_t part, int64_t parts);
  Batch next() override;

 private:
  std::unique_ptr<Dataset> inner_;
  int64_t part_, parts_;
};

}  // namespace partune::trainer
