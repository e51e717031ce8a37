#include "tests/estimate/measured_memory.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "tuner/estimate/memory_terms.h"

namespace partune {
namespace {

TEST(MeasuredMemory, Print) {
  for (const auto& m : testing::measured_memory()) {
    auto s = memory_shape(testing::config_of(m), m.world, true);
    ASSERT_TRUE(s);
    auto t = embedded_memory_terms(*s);
    std::printf("%-34s meas %6.2f pred %6.2f (%+5.1f%%) p %.2f g %.2f o %.2f a %.2f l %.2f t %.2f ov %.2f\n",
                m.label.c_str(), m.measured_gib, t.total(), 100 * (t.total() / m.measured_gib - 1), t.params, t.grads,
                t.optimizer, t.activations, t.logits, t.transient, t.overhead);
  }
}

}  // namespace
}  // namespace partune
