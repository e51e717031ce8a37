// The study database schema, as SQL, and its migrations. kMigrations[i]
// brings a database from user_version i to i + 1; a new schema version is a
// new entry here (never an edit of an old one) plus a line in
// docs/results-db.md.
#pragma once
#include <array>

namespace partune::schema {

inline constexpr const char* kVersion1 = R"sql(
CREATE TABLE studies (
  name        TEXT PRIMARY KEY,
  space_path  TEXT NOT NULL DEFAULT '',
  space_text  TEXT NOT NULL DEFAULT '',
  objective   TEXT NOT NULL DEFAULT 'mfu',
  created_at  TEXT NOT NULL,
  facts_json  TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE trials (
  study         TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
  id            TEXT NOT NULL,
  plan_index    INTEGER NOT NULL,
  status        TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done', 'failed', 'pruned')),
  failure       TEXT CHECK (failure IN ('oom', 'hang', 'timeout', 'crash', 'nccl', 'error')),
  reason        TEXT NOT NULL DEFAULT '',
  config_json   TEXT NOT NULL,
  axes_json     TEXT NOT NULL,
  attempt       INTEGER NOT NULL DEFAULT 0,
  pgid          INTEGER,
  log_dir       TEXT NOT NULL DEFAULT '',
  started_at    TEXT,
  finished_at   TEXT,
  wall_s        REAL,
  mfu           REAL,
  tps           REAL,
  tflops        REAL,
  memory_gib    REAL,
  memory_pct    REAL,
  alloc_retries INTEGER,
  oom_errors    INTEGER,
  counted_steps INTEGER,
  pruned_by     TEXT,
  source        TEXT NOT NULL DEFAULT 'tune' CHECK (source IN ('tune', 'ingest')),
  facts_json    TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (study, id)
);
CREATE INDEX trials_by_status ON trials(study, status);

CREATE TABLE steps (
  study      TEXT NOT NULL,
  trial      TEXT NOT NULL,
  attempt    INTEGER NOT NULL,
  step       INTEGER NOT NULL,
  rank       INTEGER NOT NULL DEFAULT 0,
  loss       REAL,
  grad_norm  REAL,
  memory_gib REAL,
  memory_pct REAL,
  tps        REAL,
  tflops     REAL,
  mfu        REAL,
  PRIMARY KEY (study, trial, attempt, step),
  FOREIGN KEY (study, trial) REFERENCES trials(study, id) ON DELETE CASCADE
);

CREATE TABLE events (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  study     TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
  trial     TEXT,
  time      TEXT NOT NULL,
  kind      TEXT NOT NULL,
  message   TEXT NOT NULL DEFAULT '',
  data_json TEXT
);
CREATE INDEX events_by_trial ON events(study, trial);
)sql";

// Version 2: what a trial costs besides its steps, for the ETA and the cost
// model: seconds from process start to the first step, and the host's peak
// resident memory (the embedded trainer reports both).
inline constexpr const char* kVersion2 = R"sql(
ALTER TABLE trials ADD COLUMN startup_s REAL;
ALTER TABLE trials ADD COLUMN host_peak_rss_gib REAL;
)sql";

// Version 3: the study's health rule as typed columns (it was only in
// facts_json, so a query had to dig it out), and a view of the trials that
// rule calls healthy. The view's condition is the rule of
// tuner/trial/health.h (unhealthy_because), written in SQL: done, no OOM as
// the failure or in the counters, no allocation retries when the rule counts
// them, peak memory within the headroom when known. tests/store checks that
// the two agree on every trial of real study databases.
inline constexpr const char* kVersion3 = R"sql(
ALTER TABLE studies ADD COLUMN memory_headroom REAL NOT NULL DEFAULT 0.9
  CHECK (memory_headroom > 0 AND memory_headroom <= 1);
ALTER TABLE studies ADD COLUMN alloc_retries_over_limit INTEGER NOT NULL DEFAULT 1
  CHECK (alloc_retries_over_limit IN (0, 1));
UPDATE studies SET
  memory_headroom = coalesce(json_extract(facts_json, '$.memory_headroom'), 0.9),
  alloc_retries_over_limit = coalesce(json_extract(facts_json, '$.alloc_retries_over_limit'), 1);
CREATE VIEW healthy_trials AS
SELECT t.*
FROM trials t JOIN studies s ON s.name = t.study
WHERE t.status = 'done'
  AND coalesce(t.failure, '') <> 'oom'
  AND coalesce(t.oom_errors, 0) = 0
  AND (s.alloc_retries_over_limit = 0 OR coalesce(t.alloc_retries, 0) = 0)
  AND (t.memory_pct IS NULL OR t.memory_pct <= 100.0 * s.memory_headroom);
)sql";

inline constexpr std::array<const char*, 3> kMigrations = {kVersion1, kVersion2, kVersion3};

}  // namespace partune::schema
