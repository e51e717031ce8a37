#include "tuner/study/replay.h"

#include <algorithm>
#include <map>

namespace partune {

std::set<std::string> journalled_trials(const std::vector<StudyRecord>& records) {
  std::set<std::string> ids;
  for (const auto& r : records) ids.insert(r.trial);
  return ids;
}

namespace {

// The study loop's own rule before a launch (drive.cpp): a pending candidate
// the memory model says does not fit is pruned and the sampler told so.
Ask ask_as_the_loop_did(Study& study, Sampler& sampler) {
  while (true) {
    const Ask ask = sampler.ask(study);
    sampler.take_notes();
    if (ask.kind != Ask::Kind::Trial) return ask;
    const size_t i = ask.request.index;
    if (study.status(i) != TrialStatus::Pending || study.predicted_to_fit(i)) return ask;
    study.prune(i, study.prune_reason(i));
    TrialReport rep;
    rep.request = ask.request;
    rep.status = TrialStatus::Pruned;
    rep.reason = study.prune_reason(i);
    sampler.tell(study, rep);
  }
}

}  // namespace

Replayed replay_study(Study& study, std::unique_ptr<Sampler>& sampler,
                      const std::function<std::unique_ptr<Sampler>()>& make_sampler,
                      const std::vector<StudyRecord>& records) {
  Replayed out;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < study.size(); ++i) index.emplace(study.candidate(i).id, i);
  const std::vector<TrialReport> warm = study.history();
  for (const auto& r : warm) sampler->tell(study, r);
  sampler->take_notes();

  study.set_dry(true);
  // Every replayed result, in order, with the candidates it un-pruned.
  std::vector<std::pair<TrialReport, std::vector<size_t>>> told;
  std::vector<TrialRequest> in_flight;  // launched, no result yet (oldest first)
  for (const auto& rec : records) {
    const auto at = index.find(rec.trial);
    if (at == index.end()) {
      out.matched = false;  // a trial the plan no longer has
      continue;
    }
    const size_t i = at->second;
    TrialRequest req = rec.request;
    req.index = i;
    auto flying = std::find_if(in_flight.begin(), in_flight.end(), [&](const TrialRequest& r) { return r.index == i; });
    if (rec.kind == StudyRecord::Kind::Launch) {
      if (flying != in_flight.end()) continue;  // an interrupted launch started again: asked for once
      if (out.matched) {
        const Ask ask = ask_as_the_loop_did(study, *sampler);
        out.matched = ask.kind == Ask::Kind::Trial && ask.request.index == i && ask.request.fidelity == req.fidelity &&
                      ask.request.steps == req.steps;
      }
      study.mark_running(i, "", req);
      in_flight.push_back(req);
      continue;
    }
    if (flying == in_flight.end()) {
      out.matched = false;  // a result with no launch before it
    } else {
      in_flight.erase(flying);
    }
    const Study::Finished fin = study.finish(i, req, rec.outcome);
    std::vector<size_t> restored;
    for (const auto& u : fin.unpruned) restored.push_back(u.index);
    told.emplace_back(fin.report, restored);
    ++out.results;
    if (out.matched) {
      for (size_t k : restored) sampler->restore(study, k);  // as the loop does (drive.cpp)
      sampler->tell(study, fin.report);
      sampler->take_notes();
    }
  }
  for (const auto& r : in_flight) study.interrupted(r.index);
  if (out.matched) {
    out.restart = in_flight;
  } else {
    // The journal and this sampler parted: a fresh one learns it all, in order.
    sampler = make_sampler();
    for (const auto& r : warm) sampler->tell(study, r);
    for (const auto& [r, restored] : told) {
      for (size_t k : restored) sampler->restore(study, k);
      sampler->tell(study, r);
    }
    sampler->take_notes();
  }
  study.set_dry(false);
  return out;
}

}  // namespace partune
