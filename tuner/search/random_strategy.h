// random: a seeded shuffle of the plan. Same seed and plan -> same order, on
// every platform: the shuffle uses std::mt19937_64 (fully specified by the
// standard) with our own Fisher-Yates and rejection sampling, not
// std::shuffle / uniform_int_distribution (implementation-defined).
#pragma once
#include <cstdint>

#include "tuner/search/strategy.h"

namespace partune {

class RandomStrategy : public Strategy {
 public:
  explicit RandomStrategy(uint64_t seed) : seed_(seed) {}
  std::vector<size_t> order(const std::vector<Candidate>& candidates) const override;

 private:
  uint64_t seed_;
};

}  // namespace partune
