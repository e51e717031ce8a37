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
  // Pruned candidates are skipped when reached; only a restored one
  // (restore) makes the cursor look back.
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

void OrderSampler::restore(const StudyView& /*view*/, size_t i) {
  if (!ordered_) return;  // nothing asked yet: the cursor is at the start
  for (size_t k = 0; k < cursor_ && k < order_.size(); ++k)
    if (order_[k] == i) {
      cursor_ = k;
      return;
    }
}

void OrderSampler::tell(const StudyView& /*view*/, const TrialReport& report) {
  outstanding_.erase(report.request.index);
}

}  // namespace partune
