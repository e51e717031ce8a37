#include "tuner/search/random_strategy.h"

#include <numeric>
#include <random>
#include <utility>

namespace partune {

namespace {
// Uniform in [0, n] without modulo bias.
uint64_t draw(std::mt19937_64& rng, uint64_t n) {
  if (n == UINT64_MAX) return rng();
  const uint64_t range = n + 1;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % range;  // accept [0, limit)
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % range;
}
}  // namespace

std::vector<size_t> RandomStrategy::order(const std::vector<Candidate>& candidates) const {
  std::vector<size_t> idx(candidates.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::mt19937_64 rng(seed_);
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[draw(rng, i - 1)]);
  return idx;
}

}  // namespace partune
