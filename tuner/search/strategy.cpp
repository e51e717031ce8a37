#include "tuner/search/strategy.h"

#include <stdexcept>

#include "tuner/search/grid_strategy.h"
#include "tuner/search/random_strategy.h"

namespace partune {

const std::vector<std::string>& strategy_names() {
  static const std::vector<std::string> names = {"grid", "random"};
  return names;
}

std::unique_ptr<Strategy> make_strategy(const SearchSpec& spec) {
  if (spec.strategy == "grid") return std::make_unique<GridStrategy>();
  if (spec.strategy == "random") return std::make_unique<RandomStrategy>(spec.seed);
  throw std::invalid_argument("unknown search strategy \"" + spec.strategy + "\"");
}

}  // namespace partune
