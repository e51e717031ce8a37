#include "trainer/data/dataset.h"

#include <filesystem>
#include <vector>

#include "common/error.h"

namespace partune::trainer {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

Batch batch_from_windows(const torch::Tensor& windows) {
  const int64_t s = windows.size(1) - 1;
  return {windows.narrow(1, 0, s).contiguous(), windows.narrow(1, 1, s).contiguous()};
}

SyntheticTokens::SyntheticTokens(int64_t vocab_size, int64_t local_batch_size, int64_t seq_len, uint64_t seed)
    : vocab_(vocab_size), lbs_(local_batch_size), seq_len_(seq_len), seed_(seed), rng_(splitmix64(seed)) {}

int64_t SyntheticTokens::successor(int64_t v, int64_t j) const {
  uint64_t h = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(v) * kSuccessors + static_cast<uint64_t>(j)));
  return static_cast<int64_t>(h % static_cast<uint64_t>(vocab_));
}

Batch SyntheticTokens::next() {
  auto windows = torch::empty({lbs_, seq_len_ + 1}, torch::kInt64);
  auto w = windows.accessor<int64_t, 2>();
  std::uniform_int_distribution<int64_t> first(0, vocab_ - 1), pick(0, kSuccessors - 1);
  for (int64_t b = 0; b < lbs_; ++b) {
    int64_t v = first(rng_);
    w[b][0] = v;
    for (int64_t t = 1; t <= seq_len_; ++t) w[b][t] = v = successor(v, pick(rng_));
  }
  return batch_from_windows(windows);
}

TokenFile::TokenFile(const std::string& path, int64_t vocab_size, int64_t local_batch_size, int64_t seq_len)
    : path_(path), in_(path, std::ios::binary), vocab_(vocab_size), lbs_(local_batch_size), seq_len_(seq_len) {
  if (!in_) throw InputError(path + ": cannot open the token file");
  std::error_code ec;
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) throw InputError(path + ": cannot read the token file size: " + ec.message());
  if (bytes % 4 != 0)
    throw InputError(path + ": token file size " + std::to_string(bytes) +
                     " is not a multiple of 4 (flat little-endian uint32 token ids)");
  num_tokens_ = bytes / 4;
  if (num_tokens_ < seq_len_ + 1)
    throw InputError(path + ": token file holds " + std::to_string(num_tokens_) +
                     " tokens, fewer than seq_len + 1 = " + std::to_string(seq_len_ + 1));
}

Batch TokenFile::next() {
  const int64_t window = seq_len_ + 1;
  const int64_t windows_in_file = num_tokens_ / window;
  auto out = torch::empty({lbs_, window}, torch::kInt64);
  auto w = out.accessor<int64_t, 2>();
  std::vector<unsigned char> buf(static_cast<size_t>(window) * 4);
  for (int64_t b = 0; b < lbs_; ++b) {
    if (next_window_ == windows_in_file) next_window_ = 0, ++epochs_;
    in_.clear();
    in_.seekg(next_window_ * window * 4);
    if (!in_.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size())))
      throw InputError(path_ + ": read failed at token " + std::to_string(next_window_ * window));
    for (int64_t t = 0; t < window; ++t) {
      const unsigned char* p = &buf[static_cast<size_t>(t) * 4];
      const uint32_t id = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
      if (id >= vocab_)
        throw InputError(path_ + ": token " + std::to_string(id) + " at position " +
                         std::to_string(next_window_ * window + t) + " is >= the model's vocab size " +
                         std::to_string(vocab_));
      w[b][t] = id;
    }
    ++next_window_;
  }
  return batch_from_windows(out);
}

RowSlice::RowSlice(std::unique_ptr<Dataset> inner, int64_t part, int64_t parts)
    : inner_(std::move(inner)), part_(part), parts_(parts) {}

Batch RowSlice::next() {
  Batch global = inner_->next();
  const int64_t lbs = global.inputs.size(0) / parts_;
  return {global.inputs.narrow(0, part_ * lbs, lbs).contiguous(),
          global.labels.narrow(0, part_ * lbs, lbs).contiguous()};
}

}  // namespace partune::trainer
