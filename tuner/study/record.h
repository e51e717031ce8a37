// The study's own journal: one 'launch' event when a trial starts and one
// 'result' event when it ends, in the store's events table, in the order
// they happened (the table's id). A resumed study replays them (replay.h) so
// that its sampler learns what the uninterrupted study learned, in the same
// order, and decides the same. A result is written before the trial's row,
// so a kill between the two leaves the journal, not the row, as the truth.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuner/search/sampler.h"
#include "tuner/store/store.h"
#include "tuner/study/executor.h"

namespace partune {

inline constexpr const char* kLaunchEvent = "launch";
inline constexpr const char* kResultEvent = "result";
// A trial whose result a later run took back (its node died: it is run
// again): the journal reads as if that result never came, so the replay
// starts the trial again, once.
inline constexpr const char* kRequeueEvent = "requeue";
// A candidate pruned by the memory model's prediction that a recalibration
// (after a measured trial) predicts to fit: pending again. Not part of the
// journal the replay reads: the replay makes the same decision itself
// (Study::finish), in the same place.
inline constexpr const char* kUnpruneEvent = "unprune";

struct StudyRecord {
  enum class Kind { Launch, Result };
  Kind kind = Kind::Launch;
  std::string trial;
  TrialRequest request;  // index is not recorded (the plan may differ): set by the reader
  TrialOutcome outcome;  // Result
};

nlohmann::json launch_data(const TrialRequest& request);
nlohmann::json result_data(const TrialRequest& request, const TrialOutcome& outcome);

// The journal of `study`, oldest first. A record whose data cannot be read
// throws StoreError naming the database and the event.
std::vector<StudyRecord> study_records(Store& store, const std::string& study);

}  // namespace partune
