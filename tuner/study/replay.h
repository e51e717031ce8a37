// Resuming a study: the journal (record.h) replayed in the order things
// happened, so that the resumed study is the study that was interrupted.
//
// The Study starts with the journalled trials as never run (dry: nothing is
// written) and the sampler asks again at each journalled launch, sees the
// same view (statuses, memory model) and is told each result where the
// uninterrupted study told it. While its asks match the journal, it makes the
// same decisions, including those its asks alone keep (a layout probed, the
// end of exploration, a confirmation asked); the launches the kill left
// without a result are handed back, to be started again first and once. A
// finished study thus asks for nothing more.
//
// Prunes by the memory model's prediction and un-prunes (a recalibration
// after a result predicts a pruned candidate to fit) are not journalled as
// such: the replay decides them again where the interrupted study did (the
// loop's prune before each journalled launch; Study::finish after each
// result, the sampler told restore() before the result, as drive.cpp does).
//
// When an ask differs from the journal (the space changed, or a time budget
// cut exploration at another moment), the sampler is made afresh and told
// every journalled result in order, and decides from there.
#pragma once
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tuner/search/sampler.h"
#include "tuner/study/record.h"
#include "tuner/study/study.h"

namespace partune {

struct Replayed {
  int64_t results = 0;                // journalled results told
  bool matched = true;                // every journalled launch was asked for again
  std::vector<TrialRequest> restart;  // launches without a result, to start again first (oldest first)
};

// `study` must have been made with the journal's trials as `replayed`; it is
// dry during the replay and live after it. Trials that are not in the
// journal (ingested, or finished before journals existed) are told first, as
// a warm start. The sampler's notes of the replay are dropped (they were
// shown and stored when they happened).
Replayed replay_study(Study& study, std::unique_ptr<Sampler>& sampler,
                      const std::function<std::unique_ptr<Sampler>()>& make_sampler,
                      const std::vector<StudyRecord>& records);

// The ids of the trials the journal names.
std::set<std::string> journalled_trials(const std::vector<StudyRecord>& records);

}  // namespace partune
