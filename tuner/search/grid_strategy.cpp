#include "tuner/search/grid_strategy.h"

#include <numeric>

namespace partune {

std::vector<size_t> GridStrategy::order(const std::vector<Candidate>& candidates) const {
  std::vector<size_t> idx(candidates.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  return idx;
}

}  // namespace partune
