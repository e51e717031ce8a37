// The study database: one SQLite file (WAL mode) holding studies, trials,
// step rows and events, written as they happen. It is the source of truth:
// a tuner killed at any moment (even by kill -9) loses no committed row, and
// reopening finds the trials it left 'running' (running_trials) to run again.
// Schema and queries for users: docs/results-db.md.
//
// Every write is one transaction; a Store may be used from several threads
// (calls are serialised). Errors from SQLite throw StoreError naming the db;
// a path that cannot be opened as a database throws InputError.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/job_config.h"
#include "tuner/trial/health.h"
#include "tuner/trial/trial.h"

namespace partune {

// A failure of the database itself (disk full, locked past busy_timeout, a
// missing trial): not the user's input, not a trial's failure.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kStoreSchemaVersion = 3;  // PRAGMA user_version of a current db

struct StudyRow {
  std::string name;
  std::string space_path;                           // the search-space file the study was started from
  std::string space_text;                           // its text at that time
  std::string objective;                            // "mfu" | "tps" | "tflops"
  std::string created_at;                           // set by the store (ISO 8601 UTC) on first insert
  nlohmann::json facts = nlohmann::json::object();  // hardware / software facts
  // The study's health rule (typed columns memory_headroom and
  // alloc_retries_over_limit; the healthy_trials view applies it).
  HealthRule health;
};

struct TrialRecord {
  std::string study, id;
  TrialStatus status = TrialStatus::Pending;
  FailureClass failure = FailureClass::None;
  std::string reason;                 // why failed / pruned / reset; "" if none
  std::map<std::string, Value> axes;  // the axis values that define the trial
  JobConfig config;                   // full trial job config
  TrialMetrics metrics;
  int attempt = 0;          // launches so far (0: never run)
  std::optional<int> pgid;  // process group of the running attempt
  std::string log_dir;
  std::string started_at, finished_at;  // ISO 8601 UTC; "" if not yet
  std::optional<double> wall_s;
  std::string pruned_by;                            // id of the trial whose result pruned this one
  std::string source = "tune";                      // "tune" | "ingest"
  nlohmann::json facts = nlohmann::json::object();  // host, device name, software versions
  int plan_index = 0;                               // position in the plan (insertion order)
  std::vector<StepRow> steps;                       // filled by trial_with_steps (latest attempt)
  std::optional<double> startup_s;                  // latest attempt: process start to the first step
  std::optional<double> host_peak_rss_gib;          // latest attempt: the trainer's host peak RSS
};

struct EventRow {
  int64_t id = 0;
  std::string study;
  std::optional<std::string> trial;
  std::string time;
  std::string kind;  // warning | error | prune | info | alloc_retries | reset | ...
  std::string message;
  nlohmann::json data;  // null when none
};

class Store {
 public:
  enum class Mode {
    Create,  // create the file (and its folders) when missing
    // For queries: opened read-only, never written (no -wal or -shm file is
    // made beside it either). InputError when missing (a typo makes no empty
    // db), empty, not SQLite, not a partune database, or of another schema
    // version (queries do not migrate).
    Existing,
  };

  // Opens (creating folders, file and schema as needed, migrating an older
  // schema). InputError naming the path when it cannot be opened or is not a
  // partune database, or was written by a newer partune.
  static Store open(const std::string& path, Mode mode = Mode::Create);

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  const std::string& path() const;

  // Studies. ensure_study inserts, or updates space/objective/facts of an
  // existing study (created_at is kept).
  void ensure_study(const StudyRow& study);
  std::optional<StudyRow> study(const std::string& name);
  std::vector<std::string> studies();  // in creation order

  // Adds pending trials for candidates not yet in the study; existing rows
  // (finished, pruned or not) are left untouched. Order of first insertion is
  // the plan order.
  void add_candidates(const std::string& study, const std::vector<Candidate>& candidates);

  std::optional<TrialRecord> trial(const std::string& study, const std::string& id);
  std::optional<TrialRecord> trial_with_steps(const std::string& study, const std::string& id);
  std::vector<TrialRecord> trials(const std::string& study);  // plan order
  std::vector<TrialRecord> running_trials(const std::string& study);
  // Step rows of one attempt (default: the latest), by step.
  std::vector<StepRow> steps(const std::string& study, const std::string& id,
                             std::optional<int> attempt = std::nullopt);
  std::vector<EventRow> events(const std::string& study, const std::optional<std::string>& trial = std::nullopt);

  // Trial lifecycle. Each throws StoreError when the trial is not in the study.
  // mark_running: a new attempt (attempt + 1), status running, started_at now;
  // summary metrics and failure of an earlier attempt are cleared.
  void mark_running(const std::string& study, const std::string& id, int pgid, const std::string& log_dir);
  void set_pgid(const std::string& study, const std::string& id, int pgid);
  // Merges `facts` into the trial's facts (JSON merge patch).
  void set_facts(const std::string& study, const std::string& id, const nlohmann::json& facts);
  // One step row of the current attempt, committed on return. A step logged
  // twice (same attempt) replaces the earlier row.
  void add_step(const std::string& study, const std::string& id, const StepRow& row, int rank = 0);
  void add_event(const std::string& study, const std::optional<std::string>& id, const std::string& kind,
                 const std::string& message, const nlohmann::json& data = nlohmann::json::object());
  // status: Done, Failed or Pruned (pruned after running, e.g. over the
  // memory headroom). Sets finished_at, clears pgid.
  void finish_trial(const std::string& study, const std::string& id, TrialStatus status, FailureClass failure,
                    const std::string& reason, const TrialMetrics& metrics, double wall_s);
  // The start-up time and host peak memory of the current attempt (nullopt:
  // not reported; cleared by mark_running).
  void set_trial_costs(const std::string& study, const std::string& id, std::optional<double> startup_s,
                       std::optional<double> host_peak_rss_gib);
  // Prunes a trial that is still pending (returns false and changes nothing
  // otherwise) and records a 'prune' event.
  bool mark_pruned(const std::string& study, const std::string& id, const std::string& reason,
                   const std::string& caused_by);
  // Reverses mark_pruned: a trial that is still pruned goes back to pending,
  // its reason and pruned_by cleared, and an 'unprune' event records why
  // (`message`, `data`). Returns false and changes nothing when it is not
  // pruned. The study does this for a candidate pruned by the memory model's
  // prediction that a recalibrated model predicts to fit.
  bool mark_unpruned(const std::string& study, const std::string& id, const std::string& message,
                     const nlohmann::json& data);
  // Back to pending (a trial a killed tuner left running): keeps the earlier
  // attempts' step rows, records a 'reset' event.
  void reset_to_pending(const std::string& study, const std::string& id, const std::string& reason);
  // A run done outside tune, as a finished trial with source 'ingest', its
  // steps included (as attempt max(1, record.attempt)). A planned candidate
  // with that id that has never run takes the run as its result (keeping its
  // plan index), and so does a failed ingested run (as its next attempt);
  // any other trial with that id is an InputError.
  void insert_ingested(const std::string& study, const TrialRecord& record);

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Exclusive right to run a study, held for the tuner's life. flock() on a
// lock file beside the db ("<db>.<study>.lock"), so the kernel releases it
// when the process dies, even by kill -9. The file holds the holder's pid and
// start time, for the message another tuner gets.
class StudyLock {
 public:
  // InputError "study 'x' in <db> is being run by another tune (pid N since T)"
  // when held by another process (or another StudyLock of this process).
  static StudyLock acquire(const std::string& db_path, const std::string& study);
  StudyLock(StudyLock&& o) noexcept;
  StudyLock& operator=(StudyLock&& o) noexcept;
  StudyLock(const StudyLock&) = delete;
  StudyLock& operator=(const StudyLock&) = delete;
  ~StudyLock();

  const std::string& lock_path() const { return path_; }
  static std::string lock_path_for(const std::string& db_path, const std::string& study);

 private:
  StudyLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

}  // namespace partune
