#include "tuner/search/strategy.h"

#include <stdexcept>

#include "tuner/search/grid_strategy.h"
#include "tuner/search/guided_sampler.h"
#include "tuner/search/order_sampler.h"
#include "tuner/search/random_strategy.h"

namespace partune {

const std::vector<std::string>& strategy_names() {
  static const std::vector<std::string> names = {"guided", "grid", "random"};
  return names;
}

std::unique_ptr<Strategy> make_strategy(const SearchSpec& spec) {
  if (spec.strategy == "grid") return std::make_unique<GridStrategy>();
  if (spec.strategy == "random") return std::make_unique<RandomStrategy>(spec.seed);
  throw std::invalid_argument("no fixed order for search strategy \"" + spec.strategy + "\"");
}

std::unique_ptr<Sampler> make_sampler(const SearchSpec& spec) {
  if (spec.strategy == "guided") {
    GuidedOptions o;
    o.seed = spec.seed;
    o.confirm_top_k = spec.confirm_top_k;
    return std::make_unique<GuidedSampler>(o);
  }
  return std::make_unique<OrderSampler>(make_strategy(spec));
}

std::string_view to_string(Fidelity f) {
  switch (f) {
    case Fidelity::Short:
      return "short";
    case Fidelity::Full:
      return "full";
    case Fidelity::Confirm:
      return "confirm";
  }
  return "full";
}

std::optional<Fidelity> parse_fidelity(std::string_view s) {
  if (s == "short") return Fidelity::Short;
  if (s == "full") return Fidelity::Full;
  if (s == "confirm") return Fidelity::Confirm;
  return std::nullopt;
}

}  // namespace partune
