#include "tuner/search/order_sampler.h"

namespace partune {

Ask OrderSampler::ask(const StudyView& view) {
  if (!ordered_) {
    std::vector<Candidate> cands;
    cands.reserve(view.size());
    for (size_t i = 0; i < view.size(); ++i) cands.push_back(view.candidate(i));
    order_ = strategy_->order(cands);
    ordered_ = true;
  }
  // Pruned candidates (by a trial over the memory limit) are skipped when
  // reached, so the cursor never needs to look back.
  while (cursor_ < order_.size()) {
    const size_t i = order_[cursor_++];
    if (view.status(i) != TrialStatus::Pending || outstanding_.count(i)) continue;
    outstanding_.insert(i);
    TrialRequest r;
    r.index = i;
    r.fidelity = Fidelity::Full;
    r.steps = view.trial_spec().steps;
    return Ask::trial(r);
  }
  if (!outstanding_.empty()) return Ask::wait("every candidate is run or running");
  return Ask::finished("every candidate is run or pruned");
}

void OrderSampler::tell(const StudyView& /*view*/, const TrialReport& report) {
  outstanding_.erase(report.request.index);
}

}  // namespace partune
