// `tune ingest`: records runs done outside tune (e.g. by hand with
// torchtitan) as finished trials, from their job config and log, so they
// rank and export with the rest. Only the log's numbers are needed, so a
// flavor partune does not know still ingests (with a note).
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace partune {

// The largest log tune ingest reads (a log is read whole).
inline constexpr int64_t kMaxIngestLogBytes = int64_t{1} << 30;

struct IngestOptions {
  std::string db_path;
  std::string study;
  // A study's space file (optional): a run of a config the space plans gets
  // that candidate's id, so it counts as the candidate's measurement (warm
  // start); db_path and study default to the space's.
  std::string space_path;
  std::string config_path;        // the run's torchtitan job config
  std::vector<std::string> logs;  // one run per log
  int warmup_steps = 3;           // steps not counted in the medians
};

// The trial id of a run: the id of the planned candidate whose axes and model
// the (canonicalised) config matches when a space is given (--space, else
// the space the study's last run recorded); else the
// canonical config id (tuner/plan/planner.h) when the world size is known
// (from the space, or from explicit degrees); else a hash of config and log.
// Returns the trial ids (one per log; a log ingested before is skipped and
// reported, a repeat of a measured config is kept as an event of its trial).
// A failed ingested run is replaced by a good run of the same config (an
// event keeps the failure). Throws InputError for unreadable files, logs
// that are not regular files or are over kMaxIngestLogBytes, and bad configs.
std::vector<std::string> ingest_runs(const IngestOptions& options, std::ostream& out);

// The job-config keys shown as a trial's "config" for ingested runs: the
// parallelism degrees, batch shape, AC and compile settings.
const std::vector<std::string>& ingest_axis_keys();

}  // namespace partune
