// trainer/data: the synthetic Markov-chain tokens and the uint32 token file.
#include <gtest/gtest.h>

#include <set>

#include "app_testing.h"
#include "common/error.h"
#include "trainer/data/dataset.h"

namespace partune::trainer {
namespace {

using testing::TempDir;

TEST(AppData, SyntheticIsDeterministicBySeed) {
  SyntheticTokens a(1000, 3, 17, 42), b(1000, 3, 17, 42), c(1000, 3, 17, 43);
  for (int i = 0; i < 3; ++i) {
    Batch x = a.next(), y = b.next(), z = c.next();
    EXPECT_EQ(x.inputs.sizes(), (std::vector<int64_t>{3, 17}));
    EXPECT_EQ(x.inputs.dtype(), torch::kInt64);
    EXPECT_TRUE(torch::equal(x.inputs, y.inputs));
    EXPECT_TRUE(torch::equal(x.labels, y.labels));
    EXPECT_FALSE(torch::equal(x.inputs, z.inputs));
  }
}

TEST(AppData, SyntheticLabelsAreShiftedInputsAndFollowTheChain) {
  SyntheticTokens d(500, 4, 64, 7);
  Batch b = d.next();
  EXPECT_TRUE(torch::equal(b.inputs.narrow(1, 1, 63), b.labels.narrow(1, 0, 63)));
  EXPECT_GE(b.inputs.min().item<int64_t>(), 0);
  EXPECT_LT(b.inputs.max().item<int64_t>(), 500);
  // Every next token is one of the current token's kSuccessors successors.
  auto in = b.inputs.accessor<int64_t, 2>();
  auto lab = b.labels.accessor<int64_t, 2>();
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t t = 0; t < 64; ++t) {
      std::set<int64_t> succ;
      for (int64_t j = 0; j < SyntheticTokens::kSuccessors; ++j) succ.insert(d.successor(in[r][t], j));
      EXPECT_TRUE(succ.count(lab[r][t])) << r << "," << t;
    }
}

TEST(AppData, SyntheticRowsDoNotDependOnBatchSize) {
  // Two batches of 2 rows are the same rows as one batch of 4 (so gradient
  // accumulation sees the same data as a larger batch).
  SyntheticTokens two(300, 2, 9, 5), four(300, 4, 9, 5);
  auto a = torch::cat({two.next().inputs, two.next().inputs});
  EXPECT_TRUE(torch::equal(a, four.next().inputs));
}

std::string u32_file(const std::vector<uint32_t>& ids) {
  std::string s;
  for (uint32_t v : ids)
    for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

TEST(AppData, TokenFileWindowsAndWrapAround) {
  TempDir dir("data");
  std::vector<uint32_t> ids;
  for (uint32_t i = 0; i < 11; ++i) ids.push_back(1000 + i);  // two windows of 5 (seq_len 4) and 1 left over
  const std::string path = dir.write("t.bin", u32_file(ids));
  TokenFile f(path, 2000, /*lbs=*/1, /*seq_len=*/4);
  EXPECT_EQ(f.num_tokens(), 11);
  Batch b1 = f.next();
  EXPECT_TRUE(torch::equal(b1.inputs, torch::tensor({1000, 1001, 1002, 1003}, torch::kInt64).view({1, 4})));
  EXPECT_TRUE(torch::equal(b1.labels, torch::tensor({1001, 1002, 1003, 1004}, torch::kInt64).view({1, 4})));
  Batch b2 = f.next();
  EXPECT_EQ(b2.inputs[0][0].item<int64_t>(), 1005);
  EXPECT_EQ(b2.labels[0][3].item<int64_t>(), 1009);
  Batch b3 = f.next();  // back to the start
  EXPECT_TRUE(torch::equal(b3.inputs, b1.inputs));
  EXPECT_EQ(f.epochs_completed(), 1);
}

TEST(AppData, TokenFileErrors) {
  TempDir dir("data");
  auto message = [&](const std::string& path, int64_t vocab, int64_t seq) -> std::string {
    try {
      TokenFile f(path, vocab, 1, seq);
      f.next();
    } catch (const InputError& e) {
      return e.what();
    }
    return "<no error>";
  };
  const std::string odd = dir.write("odd.bin", "abcde");
  EXPECT_EQ(message(odd, 100, 1),
            odd + ": token file size 5 is not a multiple of 4 (flat little-endian uint32 token ids)");
  const std::string small = dir.write("small.bin", u32_file({1, 2}));
  EXPECT_EQ(message(small, 100, 4), small + ": token file holds 2 tokens, fewer than seq_len + 1 = 5");
  const std::string big = dir.write("big.bin", u32_file({1, 2, 300}));
  EXPECT_EQ(message(big, 100, 2), big + ": token 300 at position 2 is >= the model's vocab size 100");
  EXPECT_EQ(message((dir.path() / "missing.bin").string(), 100, 2),
            (dir.path() / "missing.bin").string() + ": cannot open the token file");
}

}  // namespace
}  // namespace partune::trainer
