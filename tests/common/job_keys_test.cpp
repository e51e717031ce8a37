#include "common/job_keys.h"

#include <gtest/gtest.h>

namespace partune {
namespace {

TEST(JobKeys, ShortNamesOfTheSearchedKeys) {
  EXPECT_EQ(keys::short_name(keys::kTp), "TP");
  EXPECT_EQ(keys::short_name(keys::kEtp), "ETP");
  EXPECT_EQ(keys::short_name(keys::kSeqLen), "seq");
  EXPECT_EQ(keys::short_name(keys::kAcMode), "ac");
}

TEST(JobKeys, KeyWithoutShortNameUsesItsLastPart) {
  EXPECT_EQ(keys::short_name("optimizer.lr"), "lr");
  EXPECT_EQ(keys::short_name("training.dataloader.num_workers"), "num_workers");
  EXPECT_EQ(keys::short_name("nodots"), "nodots");
}

TEST(JobKeys, EveryDeclaredKeyIsInTheSchema) {
  for (const char* k : {keys::kDpReplicate, keys::kDpShard, keys::kCp, keys::kTp, keys::kPp, keys::kEp, keys::kEtp,
                        keys::kLbs, keys::kGbs, keys::kSeqLen, keys::kSteps, keys::kAcMode, keys::kAcOption,
                        keys::kCompile, keys::kCompileComponents, keys::kModelName, keys::kModelFlavor, keys::kLogFreq})
    EXPECT_NE(find_key_spec(k), nullptr) << k;
}

TEST(JobKeys, ParallelDimsOfAConfig) {
  JobConfig c;
  c.set(keys::kTp, int64_t{2});
  c.set(keys::kEp, int64_t{4});
  c.set(keys::kDpShard, int64_t{-1});
  const ParallelDims d = parallel_dims_of(c);
  EXPECT_EQ(d.tp, 2);
  EXPECT_EQ(d.ep, 4);
  EXPECT_EQ(d.dp_shard, -1);
  EXPECT_EQ(d.dp_replicate, 1);
  c.set(keys::kTp, int64_t{1} << 40);  // clamped, so still illegal for any world
  EXPECT_EQ(parallel_dims_of(c).tp, 1 << 30);
}

TEST(JobKeys, BatchShapeOfAConfig) {
  JobConfig c;
  c.set(keys::kLbs, int64_t{4});
  c.set(keys::kSeqLen, int64_t{8192});
  const BatchShape b = batch_shape_of(c);
  EXPECT_EQ(b.local_batch_size, 4);
  EXPECT_EQ(b.seq_len, 8192);
  EXPECT_EQ(b.global_batch_size, -1);
}

}  // namespace
}  // namespace partune
