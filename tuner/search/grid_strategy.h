// grid: the planner's order (the cartesian product, first axis outermost).
#pragma once
#include "tuner/search/strategy.h"

namespace partune {

class GridStrategy : public Strategy {
 public:
  std::vector<size_t> order(const std::vector<Candidate>& candidates) const override;
};

}  // namespace partune
