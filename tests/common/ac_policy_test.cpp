// common/ac_policy: the one reading of the two activation-checkpointing keys.
#include "common/ac_policy.h"

#include <gtest/gtest.h>

#include "common/job_keys.h"

namespace partune {
namespace {

JobConfig ac(const std::string& mode, const std::string& option = "2") {
  JobConfig c;
  c.set(keys::kAcMode, Value{mode});
  c.set(keys::kAcOption, Value{option});
  return c;
}

TEST(AcPolicy, ReadsEveryModeAndTheSelectiveOption) {
  EXPECT_EQ(ac_policy_of(ac("none"))->mode, AcPolicyMode::None);
  EXPECT_EQ(ac_policy_of(ac("full"))->mode, AcPolicyMode::Full);
  EXPECT_EQ(ac_policy_of(ac("memory_budget"))->mode, AcPolicyMode::MemoryBudget);
  const auto op = ac_policy_of(ac("selective", "op"));
  ASSERT_TRUE(op);
  EXPECT_EQ(op->mode, AcPolicyMode::Selective);
  EXPECT_TRUE(op->per_op);
  const auto every3 = ac_policy_of(ac("selective", "3"));
  ASSERT_TRUE(every3);
  EXPECT_FALSE(every3->per_op);
  EXPECT_EQ(every3->every_n, 3);
  EXPECT_EQ(ac_policy_of(ac("selective", "0"))->every_n, 0);
}

TEST(AcPolicy, AnUnreadableOptionNamesItsKey) {
  for (const std::string bad : {"-1", "two", "2x", ""}) {
    AcPolicyError error;
    EXPECT_FALSE(ac_policy_of(ac("selective", bad), &error)) << bad;
    EXPECT_EQ(error.key, keys::kAcOption) << bad;
    EXPECT_NE(error.message.find("'" + bad + "'"), std::string::npos) << error.message;
  }
  // The option is not read unless the mode is selective.
  EXPECT_TRUE(ac_policy_of(ac("full", "two")));
}

}  // namespace
}  // namespace partune
