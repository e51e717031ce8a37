// grid and random as samplers: a fixed order of the candidates (a Strategy),
// each run once at full fidelity. ask() hands out the next pending candidate
// of the order that is not outstanding, so it keeps answering while other
// trials run. A candidate pruned and then restored (restore()) is run at its
// place in the order: the cursor goes back to it.
#pragma once
#include <set>

#include "tuner/search/sampler.h"
#include "tuner/search/strategy.h"

namespace partune {

class OrderSampler : public Sampler {
 public:
  explicit OrderSampler(std::unique_ptr<Strategy> strategy) : strategy_(std::move(strategy)) {}
  Ask ask(const StudyView& view) override;
  void tell(const StudyView& view, const TrialReport& report) override;
  // Moves the cursor back to the restored candidate's place in the order.
  void restore(const StudyView& view, size_t i) override;
  bool one_trial_per_candidate() const override { return true; }

 private:
  std::unique_ptr<Strategy> strategy_;
  std::vector<size_t> order_;
  bool ordered_ = false;
  size_t cursor_ = 0;  // everything before it is asked or not pending
  std::set<size_t> outstanding_;
};

}  // namespace partune
