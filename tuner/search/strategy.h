// Search strategies: in which order the planned candidates run. A strategy is
// a pure function of the candidates (and its spec): the same plan and spec
// always give the same order, so a resumed study continues where it stopped.
// max_trials is not applied here; the study runner stops after that many.
// Adding a strategy = one new file + one line in strategy.cpp.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {

class Strategy {
 public:
  virtual ~Strategy() = default;
  // A permutation of 0..candidates.size()-1: the order to run them in.
  virtual std::vector<size_t> order(const std::vector<Candidate>& candidates) const = 0;
};

// Strategy names accepted in [search] strategy, in documentation order.
const std::vector<std::string>& strategy_names();

// Throws std::invalid_argument for a name not in strategy_names() (load_space
// rejects those first, with file and line).
std::unique_ptr<Strategy> make_strategy(const SearchSpec& spec);

}  // namespace partune
