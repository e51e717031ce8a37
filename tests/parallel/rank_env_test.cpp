#include <gtest/gtest.h>

#include <map>
#include <string>

#include "common/error.h"
#include "trainer/parallel/distributed.h"

namespace partune::trainer {
namespace {

RankEnv from(const std::map<std::string, std::string>& env) {
  return rank_env_from([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& env) {
  try {
    from(env);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(RankEnv, Torchrun) {
  auto e = from({{"RANK", "5"},
                 {"WORLD_SIZE", "8"},
                 {"LOCAL_RANK", "1"},
                 {"LOCAL_WORLD_SIZE", "4"},
                 {"MASTER_ADDR", "node0"},
                 {"MASTER_PORT", "29600"}});
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29600);
}

TEST(RankEnv, SlurmWhenRankAbsent) {
  auto e = from({{"SLURM_PROCID", "3"},
                 {"SLURM_NTASKS", "4"},
                 {"SLURM_LOCALID", "1"},
                 {"SLURM_NTASKS_PER_NODE", "2(x2)"},
                 {"MASTER_ADDR", "10.0.0.1"}});
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_port, 29500);
}

TEST(RankEnv, TorchrunWinsOverSlurm) {
  auto e = from(
      {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"MASTER_ADDR", "127.0.0.1"}});
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.local_rank, 1);  // no LOCAL_RANK: single node
}

TEST(RankEnv, NothingSetIsOneProcess) {
  auto e = from({});
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
}

TEST(RankEnv, BadValuesNameTheVariable) {
  EXPECT_EQ(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), "environment: RANK: not an integer: 'x'");
  EXPECT_EQ(error_of({{"RANK", "0"}}), "environment: WORLD_SIZE is not set");
  EXPECT_EQ(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), "environment: RANK 2 is not below WORLD_SIZE 2");
  EXPECT_EQ(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}), "environment: MASTER_ADDR is not set");
  EXPECT_EQ(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
            "environment: MASTER_PORT: must be <= 65535, got 70000");
  EXPECT_EQ(error_of({{"WORLD_SIZE", "4"}}), "environment: WORLD_SIZE is 4 but RANK is not set");
}

}  // namespace
}  // namespace partune::trainer
