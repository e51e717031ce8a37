#include "tuner/store/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/error.h"
#include "common/utc.h"
#include "tuner/store/schema.h"

namespace partune {

static_assert(kStoreSchemaVersion == static_cast<int>(schema::kMigrations.size()));

namespace {

constexpr int kBusyTimeoutMs = 10000;

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbHandle = std::unique_ptr<sqlite3, DbClose>;
using StmtHandle = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

nlohmann::json config_to_json(const JobConfig& config) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, value] : config.values()) j[key] = value_to_json(value);
  return j;
}

nlohmann::json axes_to_json(const std::map<std::string, Value>& axes) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, value] : axes) j[key] = value_to_json(value);
  return j;
}

}  // namespace

struct Store::Impl {
  std::string path;
  DbHandle db;
  std::mutex mutex;
  std::unordered_map<std::string, StmtHandle> cache;

  [[noreturn]] void fail(const std::string& what) const {
    throw StoreError(path + ": " + what + ": " + sqlite3_errmsg(db.get()));
  }
  void exec(const char* sql) {
    if (sqlite3_exec(db.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(sql);
  }

  // A cached prepared statement, reset and unbound when the Stmt goes out of scope.
  class Stmt {
   public:
    Stmt(Impl& impl, sqlite3_stmt* s) : impl_(impl), s_(s) {}
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    ~Stmt() {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }

    Stmt& bind(int i, const std::string& v) {
      return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    }
    Stmt& bind(int i, const char* v) { return bind(i, std::string(v)); }
    Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
    Stmt& bind(int i, int v) { return check(sqlite3_bind_int64(s_, i, v)); }
    Stmt& bind(int i, double v) { return check(sqlite3_bind_double(s_, i, v)); }
    Stmt& bind(int i, std::nullptr_t) { return check(sqlite3_bind_null(s_, i)); }
    template <typename T>
    Stmt& bind(int i, const std::optional<T>& v) {
      return v ? bind(i, *v) : bind(i, nullptr);
    }

    // true: a row is ready; false: done.
    bool step() {
      int rc = sqlite3_step(s_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      impl_.fail(sqlite3_sql(s_));
    }
    void run() {
      while (step()) {
      }
    }

    bool null(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
    std::string text(int i) const {
      auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
      return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i))) : std::string();
    }
    int64_t int64(int i) const { return sqlite3_column_int64(s_, i); }
    std::optional<double> opt_double(int i) const {
      if (null(i)) return std::nullopt;
      return sqlite3_column_double(s_, i);
    }
    std::optional<int64_t> opt_int64(int i) const {
      if (null(i)) return std::nullopt;
      return int64(i);
    }

   private:
    Stmt& check(int rc) {
      if (rc != SQLITE_OK) impl_.fail("bind");
      return *this;
    }
    Impl& impl_;
    sqlite3_stmt* s_;
  };

  Stmt prepare(const std::string& sql) {
    auto it = cache.find(sql);
    if (it == cache.end()) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v3(db.get(), sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
        fail("prepare " + sql);
      it = cache.emplace(sql, StmtHandle(s)).first;
    }
    return Stmt(*this, it->second.get());
  }

  // BEGIN IMMEDIATE: takes the write lock up front, so a busy db waits
  // (busy_timeout) at the start instead of failing half-way.
  class Transaction {
   public:
    explicit Transaction(Impl& impl) : impl_(impl) { impl_.exec("BEGIN IMMEDIATE"); }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit() {
      impl_.exec("COMMIT");
      done_ = true;
    }
    ~Transaction() {
      if (!done_) sqlite3_exec(impl_.db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }

   private:
    Impl& impl_;
    bool done_ = false;
  };

  int user_version() {
    auto s = prepare("PRAGMA user_version");
    s.step();
    return static_cast<int>(s.int64(0));
  }

  void migrate() {
    int version = user_version();
    if (version > kStoreSchemaVersion)
      throw InputError(path + ": results database has schema version " + std::to_string(version) +
                       ", newer than this partune knows (" + std::to_string(kStoreSchemaVersion) +
                       "); use a newer partune");
    if (version == kStoreSchemaVersion) return;
    Transaction tx(*this);
    version = user_version();  // another process may have migrated meanwhile
    if (version == 0) {
      auto s = prepare("SELECT count(*) FROM sqlite_master");
      s.step();
      if (s.int64(0) != 0)
        throw InputError(path +
                         ": an SQLite database, but not a partune results database "
                         "(it has tables and no schema version)");
    }
    for (int v = version; v < kStoreSchemaVersion; ++v) exec(schema::kMigrations[v]);
    exec(("PRAGMA user_version = " + std::to_string(kStoreSchemaVersion)).c_str());
    tx.commit();
  }

  // For queries, which do not migrate: InputError unless this is a partune
  // database of this partune's schema. `note` ends each message.
  void require_current_schema(const std::string& note) {
    const int version = user_version();
    if (version == kStoreSchemaVersion) return;
    if (version > kStoreSchemaVersion)
      throw InputError(path + ": results database has schema version " + std::to_string(version) +
                       ", newer than this partune knows (" + std::to_string(kStoreSchemaVersion) +
                       "); use a newer partune" + note);
    if (version == 0) {
      auto s = prepare("SELECT count(*) FROM sqlite_master");
      s.step();
      throw InputError(path + ": an SQLite database, but not a partune results database (" +
                       (s.int64(0) == 0 ? std::string("it has no tables") : "it has tables and no schema version") +
                       "); queries leave it as it is" + note);
    }
    throw InputError(path + ": results database of schema version " + std::to_string(version) +
                     ", written by an older partune; queries do not upgrade it: a `tune run` of its study does "
                     "(this partune reads version " +
                     std::to_string(kStoreSchemaVersion) + ")" + note);
  }

  bool study_exists(const std::string& study) {
    auto s = prepare("SELECT 1 FROM studies WHERE name = ?1");
    s.bind(1, study);
    return s.step();
  }
  void require_study(const std::string& study) {
    if (!study_exists(study)) throw StoreError(path + ": study '" + study + "' is not in the database");
  }
  [[noreturn]] void no_trial(const std::string& study, const std::string& id) const {
    throw StoreError(path + ": trial '" + id + "' is not in study '" + study + "'");
  }
  int next_plan_index(const std::string& study) {
    auto s = prepare("SELECT COALESCE(MAX(plan_index) + 1, 0) FROM trials WHERE study = ?1");
    s.bind(1, study);
    s.step();
    return static_cast<int>(s.int64(0));
  }

  nlohmann::json parse_json(const std::string& text, const std::string& what) const {
    if (text.empty()) return nullptr;
    try {
      return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw StoreError(path + ": " + what + ": not valid JSON: " + e.what());
    }
  }

  static constexpr const char* kTrialColumns =
      "study, id, status, failure, reason, config_json, axes_json, attempt, pgid, log_dir, "
      "started_at, finished_at, wall_s, mfu, tps, tflops, memory_gib, memory_pct, "
      "alloc_retries, oom_errors, counted_steps, pruned_by, source, facts_json, plan_index, startup_s, "
      "host_peak_rss_gib";

  TrialRecord read_trial(const Stmt& s) const {
    TrialRecord r;
    r.study = s.text(0);
    r.id = s.text(1);
    const std::string where = path + ": trial '" + r.id + "'";
    auto status = parse_trial_status(s.text(2));
    if (!status) throw StoreError(where + ": unknown status '" + s.text(2) + "'");
    r.status = *status;
    auto failure = parse_failure_class(s.text(3));
    if (!failure) throw StoreError(where + ": unknown failure class '" + s.text(3) + "'");
    r.failure = *failure;
    r.reason = s.text(4);
    const nlohmann::json config = parse_json(s.text(5), where + " config_json");
    for (const auto& [key, value] : config.items()) {
      const std::string at = where + " config_json";
      r.config.set(key, value_from_json(key, value, at), at);
    }
    const nlohmann::json axes = parse_json(s.text(6), where + " axes_json");
    for (const auto& [key, value] : axes.items())
      r.axes.emplace(key, value_from_json(key, value, where + " axes_json"));
    r.attempt = static_cast<int>(s.int64(7));
    if (!s.null(8)) r.pgid = static_cast<int>(s.int64(8));
    r.log_dir = s.text(9);
    r.started_at = s.text(10);
    r.finished_at = s.text(11);
    r.wall_s = s.opt_double(12);
    r.metrics.mfu = s.opt_double(13);
    r.metrics.tps = s.opt_double(14);
    r.metrics.tflops = s.opt_double(15);
    r.metrics.memory_gib = s.opt_double(16);
    r.metrics.memory_pct = s.opt_double(17);
    r.metrics.alloc_retries = s.opt_int64(18).value_or(0);
    r.metrics.oom_errors = s.opt_int64(19).value_or(0);
    r.metrics.counted_steps = s.opt_int64(20).value_or(0);
    r.pruned_by = s.text(21);
    r.source = s.text(22);
    r.facts = parse_json(s.text(23), where + " facts_json");
    if (r.facts.is_null()) r.facts = nlohmann::json::object();
    r.plan_index = static_cast<int>(s.int64(24));
    r.startup_s = s.opt_double(25);
    r.host_peak_rss_gib = s.opt_double(26);
    return r;
  }

  std::vector<TrialRecord> query_trials(const std::string& study, const std::string& where) {
    auto s = prepare(std::string("SELECT ") + kTrialColumns + " FROM trials WHERE study = ?1" + where +
                     " ORDER BY plan_index");
    s.bind(1, study);
    std::vector<TrialRecord> out;
    while (s.step()) out.push_back(read_trial(s));
    return out;
  }

  std::optional<TrialRecord> query_trial(const std::string& study, const std::string& id) {
    auto s = prepare(std::string("SELECT ") + kTrialColumns + " FROM trials WHERE study = ?1 AND id = ?2");
    s.bind(1, study).bind(2, id);
    if (!s.step()) return std::nullopt;
    return read_trial(s);
  }

  std::vector<StepRow> query_steps(const std::string& study, const std::string& id, int attempt) {
    auto s = prepare(
        "SELECT step, loss, grad_norm, memory_gib, memory_pct, tps, tflops, mfu FROM steps "
        "WHERE study = ?1 AND trial = ?2 AND attempt = ?3 ORDER BY step");
    s.bind(1, study).bind(2, id).bind(3, attempt);
    std::vector<StepRow> out;
    while (s.step()) {
      StepRow r;
      r.step = s.int64(0);
      r.loss = s.opt_double(1);
      r.grad_norm = s.opt_double(2);
      r.memory_gib = s.opt_double(3);
      r.memory_pct = s.opt_double(4);
      r.tps = s.opt_double(5);
      r.tflops = s.opt_double(6);
      r.mfu = s.opt_double(7);
      out.push_back(r);
    }
    return out;
  }

  void insert_step(const std::string& study, const std::string& id, int attempt, const StepRow& row, int rank) {
    auto s = prepare(
        "INSERT OR REPLACE INTO steps (study, trial, attempt, step, rank, loss, grad_norm, "
        "memory_gib, memory_pct, tps, tflops, mfu) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    s.bind(1, study).bind(2, id).bind(3, attempt).bind(4, row.step).bind(5, rank);
    s.bind(6, row.loss).bind(7, row.grad_norm).bind(8, row.memory_gib).bind(9, row.memory_pct);
    s.bind(10, row.tps).bind(11, row.tflops).bind(12, row.mfu);
    s.run();
  }

  void insert_event(const std::string& study, const std::optional<std::string>& trial, const std::string& kind,
                    const std::string& message, const nlohmann::json& data) {
    auto s = prepare(
        "INSERT INTO events (study, trial, time, kind, message, data_json) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    s.bind(1, study).bind(2, trial).bind(3, utc_now_iso8601()).bind(4, kind).bind(5, message);
    if (data.is_null() || (data.is_object() && data.empty()))
      s.bind(6, nullptr);
    else
      s.bind(6, data.dump());
    s.run();
  }

  int changes() const { return sqlite3_changes(db.get()); }

  // WAL mode, which a fresh database gets from whichever tune opens it first.
  // Two tunes opening one fresh file at once can see the switch fail while
  // the other holds a lock ("delete" comes back, or SQLITE_BUSY): that is a
  // race, not a bad file, so it is retried for 3 s before it is reported.
  void set_wal_mode() {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    std::string mode;
    while (true) {
      sqlite3_stmt* raw = nullptr;
      int rc = sqlite3_prepare_v2(db.get(), "PRAGMA journal_mode = WAL", -1, &raw, nullptr);
      StmtHandle stmt(raw);
      if (rc == SQLITE_OK) rc = sqlite3_step(raw);
      if (rc == SQLITE_ROW) {
        mode = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
        if (mode == "wal") return;
      } else if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
        fail("PRAGMA journal_mode = WAL");
      }
      if (std::chrono::steady_clock::now() > give_up) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (mode.empty()) fail("PRAGMA journal_mode = WAL: busy");
    throw InputError(path + ": cannot use WAL journal mode here (got '" + mode +
                     "'); put the database on a local filesystem");
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

const std::string& Store::path() const { return impl_->path; }

namespace {

// A path as an SQLite URI path: '%', '?' and '#' would end or escape it.
std::string uri_path(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// Before SQLite sees it: an empty file (SQLite would take it for a new
// database) or a file of another kind.
void refuse_what_is_not_sqlite(const std::string& path) {
  static constexpr char kMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;  // SQLite says why
  struct stat st;
  char head[sizeof kMagic];
  const bool is_file = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const ssize_t got = is_file ? ::pread(fd, head, sizeof head, 0) : 0;
  ::close(fd);
  if (!is_file) throw InputError(path + ": not a regular file, not a results database");
  if (st.st_size == 0) throw InputError(path + ": an empty file, not a results database (left as it is)");
  if (got != static_cast<ssize_t>(sizeof head) || std::memcmp(head, kMagic, sizeof head) != 0)
    throw InputError(path + ": not an SQLite database, so not a results database (left as it is)");
}

std::string read_only_note(bool read_only, const std::filesystem::path& folder) {
  if (!read_only) return "";
  return " (the folder '" + folder.string() + "' or the file is not writable, so it was opened read-only)";
}

}  // namespace

Store Store::open(const std::string& path, Mode mode) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  if (mode == Mode::Existing && !fs::exists(p, ec)) throw InputError(path + ": no results database here");
  if (p.has_parent_path() && !fs::is_directory(p.parent_path(), ec)) {
    // Another tune may create it at the same moment: create, then judge what is there.
    fs::create_directories(p.parent_path(), ec);
    if (!ec && !fs::is_directory(p.parent_path(), ec)) ec = std::make_error_code(std::errc::not_a_directory);
    if (ec)
      throw InputError(path + ": cannot create folder '" + p.parent_path().string() +
                       "' for the results database: " + ec.message());
  }
  if (fs::is_directory(p, ec)) throw InputError(path + ": is a folder, not a results database");

  // Queries never write: not the file (an empty file or a database of no
  // tables would become a partune database), not its schema, not a -wal or
  // -shm beside it. What is not a current partune database is refused.
  const fs::path folder = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const bool read_only = mode == Mode::Existing;
  const bool folder_read_only = read_only && (::access(folder.c_str(), W_OK) != 0 || ::access(path.c_str(), W_OK) != 0);
  if (read_only) refuse_what_is_not_sqlite(path);

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  sqlite3* raw = nullptr;
  std::string target = path;
  int flags = SQLITE_OPEN_READWRITE | (mode == Mode::Create ? SQLITE_OPEN_CREATE : 0);
  if (read_only) {
    flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
    // A -wal file means a tune writes (or was killed writing): read through
    // it. Without one, nothing is uncommitted: the file is all there is
    // (immutable), and no -wal or -shm file is made beside it (mode=ro
    // would leave both).
    const bool has_wal = fs::exists(path + "-wal", ec) && fs::exists(path + "-shm", ec);
    target = "file:" + uri_path(fs::absolute(p, ec).string()) + (has_wal ? "?mode=ro" : "?immutable=1");
  }
  int rc = sqlite3_open_v2(target.c_str(), &raw, flags, nullptr);
  impl->db.reset(raw);
  if (rc != SQLITE_OK)
    throw InputError(path + ": cannot open results database" + (read_only ? " read-only" : "") + ": " +
                     (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)) + read_only_note(folder_read_only, folder));
  try {
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, kBusyTimeoutMs);
    impl->exec("PRAGMA foreign_keys = ON");
    if (read_only) {
      impl->require_current_schema(read_only_note(folder_read_only, folder));
      return Store(std::move(impl));
    }
    impl->set_wal_mode();
    // WAL + NORMAL: a committed transaction survives the process being killed.
    impl->exec("PRAGMA synchronous = NORMAL");
    impl->migrate();
  } catch (const StoreError& e) {
    throw InputError(std::string(e.what()) + " (is it a partune results database?)" +
                     read_only_note(folder_read_only, folder));
  }
  return Store(std::move(impl));
}

void Store::ensure_study(const StudyRow& study) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare(
      "INSERT INTO studies (name, space_path, space_text, objective, created_at, facts_json, memory_headroom, "
      "alloc_retries_over_limit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (name) DO UPDATE SET "
      "space_path = excluded.space_path, space_text = excluded.space_text, "
      "objective = excluded.objective, facts_json = excluded.facts_json, "
      "memory_headroom = excluded.memory_headroom, alloc_retries_over_limit = excluded.alloc_retries_over_limit");
  s.bind(1, study.name).bind(2, study.space_path).bind(3, study.space_text);
  s.bind(4, study.objective).bind(5, study.created_at.empty() ? utc_now_iso8601() : study.created_at);
  s.bind(6, study.facts.is_null() ? std::string("{}") : study.facts.dump());
  s.bind(7, study.health.memory_headroom).bind(8, static_cast<int64_t>(study.health.alloc_retries_over_limit ? 1 : 0));
  s.run();
  tx.commit();
}

std::optional<StudyRow> Store::study(const std::string& name) {
  std::lock_guard lock(impl_->mutex);
  auto s = impl_->prepare(
      "SELECT name, space_path, space_text, objective, created_at, facts_json, memory_headroom, "
      "alloc_retries_over_limit FROM studies WHERE name = ?1");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  StudyRow r;
  r.name = s.text(0);
  r.space_path = s.text(1);
  r.space_text = s.text(2);
  r.objective = s.text(3);
  r.created_at = s.text(4);
  r.facts = impl_->parse_json(s.text(5), "study '" + name + "' facts_json");
  if (r.facts.is_null()) r.facts = nlohmann::json::object();
  r.health.memory_headroom = s.opt_double(6).value_or(kDefaultMemoryHeadroom);
  r.health.alloc_retries_over_limit = s.int64(7) != 0;
  return r;
}

std::vector<std::string> Store::studies() {
  std::lock_guard lock(impl_->mutex);
  auto s = impl_->prepare("SELECT name FROM studies ORDER BY rowid");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

void Store::add_candidates(const std::string& study, const std::vector<Candidate>& candidates) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  impl_->require_study(study);
  int next = impl_->next_plan_index(study);
  for (const Candidate& c : candidates) {
    auto s = impl_->prepare(
        "INSERT OR IGNORE INTO trials (study, id, plan_index, status, config_json, axes_json) "
        "VALUES (?1, ?2, ?3, 'pending', ?4, ?5)");
    s.bind(1, study).bind(2, c.id).bind(3, next);
    s.bind(4, config_to_json(c.config).dump()).bind(5, axes_to_json(c.axes).dump());
    s.run();
    if (impl_->changes() == 1) ++next;
  }
  tx.commit();
}

std::optional<TrialRecord> Store::trial(const std::string& study, const std::string& id) {
  std::lock_guard lock(impl_->mutex);
  return impl_->query_trial(study, id);
}

std::optional<TrialRecord> Store::trial_with_steps(const std::string& study, const std::string& id) {
  std::lock_guard lock(impl_->mutex);
  auto r = impl_->query_trial(study, id);
  if (r) r->steps = impl_->query_steps(study, id, r->attempt);
  return r;
}

std::vector<TrialRecord> Store::trials(const std::string& study) {
  std::lock_guard lock(impl_->mutex);
  return impl_->query_trials(study, "");
}

std::vector<TrialRecord> Store::running_trials(const std::string& study) {
  std::lock_guard lock(impl_->mutex);
  return impl_->query_trials(study, " AND status = 'running'");
}

std::vector<StepRow> Store::steps(const std::string& study, const std::string& id, std::optional<int> attempt) {
  std::lock_guard lock(impl_->mutex);
  if (!attempt) {
    auto r = impl_->query_trial(study, id);
    if (!r) impl_->no_trial(study, id);
    attempt = r->attempt;
  }
  return impl_->query_steps(study, id, *attempt);
}

std::vector<EventRow> Store::events(const std::string& study, const std::optional<std::string>& trial) {
  std::lock_guard lock(impl_->mutex);
  auto s = impl_->prepare(
      "SELECT id, study, trial, time, kind, message, data_json FROM events "
      "WHERE study = ?1 AND (?2 IS NULL OR trial = ?2) ORDER BY id");
  s.bind(1, study).bind(2, trial);
  std::vector<EventRow> out;
  while (s.step()) {
    EventRow e;
    e.id = s.int64(0);
    e.study = s.text(1);
    if (!s.null(2)) e.trial = s.text(2);
    e.time = s.text(3);
    e.kind = s.text(4);
    e.message = s.text(5);
    e.data = impl_->parse_json(s.text(6), "event " + std::to_string(e.id) + " data_json");
    out.push_back(std::move(e));
  }
  return out;
}

void Store::mark_running(const std::string& study, const std::string& id, int pgid, const std::string& log_dir) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare(
      "UPDATE trials SET status = 'running', attempt = attempt + 1, pgid = ?3, log_dir = ?4, "
      "started_at = ?5, finished_at = NULL, failure = NULL, reason = '', pruned_by = NULL, "
      "wall_s = NULL, mfu = NULL, tps = NULL, tflops = NULL, memory_gib = NULL, "
      "memory_pct = NULL, alloc_retries = NULL, oom_errors = NULL, counted_steps = NULL, "
      "startup_s = NULL, host_peak_rss_gib = NULL "
      "WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id).bind(3, pgid).bind(4, log_dir).bind(5, utc_now_iso8601());
  s.run();
  if (impl_->changes() != 1) impl_->no_trial(study, id);
  tx.commit();
}

void Store::set_trial_costs(const std::string& study, const std::string& id, std::optional<double> startup_s,
                            std::optional<double> host_peak_rss_gib) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare("UPDATE trials SET startup_s = ?3, host_peak_rss_gib = ?4 WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id).bind(3, startup_s).bind(4, host_peak_rss_gib);
  s.run();
  if (impl_->changes() != 1) impl_->no_trial(study, id);
  tx.commit();
}

void Store::set_pgid(const std::string& study, const std::string& id, int pgid) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare("UPDATE trials SET pgid = ?3 WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id).bind(3, pgid);
  s.run();
  if (impl_->changes() != 1) impl_->no_trial(study, id);
  tx.commit();
}

void Store::set_facts(const std::string& study, const std::string& id, const nlohmann::json& facts) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto r = impl_->query_trial(study, id);
  if (!r) impl_->no_trial(study, id);
  r->facts.merge_patch(facts);
  auto s = impl_->prepare("UPDATE trials SET facts_json = ?3 WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id).bind(3, r->facts.dump());
  s.run();
  tx.commit();
}

void Store::add_step(const std::string& study, const std::string& id, const StepRow& row, int rank) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare("SELECT attempt FROM trials WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id);
  if (!s.step()) impl_->no_trial(study, id);
  const int attempt = static_cast<int>(s.int64(0));
  impl_->insert_step(study, id, attempt, row, rank);
  tx.commit();
}

void Store::add_event(const std::string& study, const std::optional<std::string>& id, const std::string& kind,
                      const std::string& message, const nlohmann::json& data) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  impl_->insert_event(study, id, kind, message, data);
  tx.commit();
}

void Store::finish_trial(const std::string& study, const std::string& id, TrialStatus status, FailureClass failure,
                         const std::string& reason, const TrialMetrics& metrics, double wall_s) {
  if (status != TrialStatus::Done && status != TrialStatus::Failed && status != TrialStatus::Pruned)
    throw std::invalid_argument("finish_trial: status must be done, failed or pruned, not " +
                                std::string(to_string(status)));
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare(
      "UPDATE trials SET status = ?3, failure = ?4, reason = ?5, mfu = ?6, tps = ?7, "
      "tflops = ?8, memory_gib = ?9, memory_pct = ?10, alloc_retries = ?11, oom_errors = ?12, "
      "counted_steps = ?13, wall_s = ?14, finished_at = ?15, pgid = NULL "
      "WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id).bind(3, std::string(to_string(status)));
  if (failure == FailureClass::None)
    s.bind(4, nullptr);
  else
    s.bind(4, std::string(to_string(failure)));
  s.bind(5, reason).bind(6, metrics.mfu).bind(7, metrics.tps).bind(8, metrics.tflops);
  s.bind(9, metrics.memory_gib).bind(10, metrics.memory_pct).bind(11, metrics.alloc_retries);
  s.bind(12, metrics.oom_errors).bind(13, metrics.counted_steps).bind(14, wall_s);
  s.bind(15, utc_now_iso8601());
  s.run();
  if (impl_->changes() != 1) impl_->no_trial(study, id);
  tx.commit();
}

bool Store::mark_pruned(const std::string& study, const std::string& id, const std::string& reason,
                        const std::string& caused_by) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare(
      "UPDATE trials SET status = 'pruned', reason = ?3, pruned_by = ?4 "
      "WHERE study = ?1 AND id = ?2 AND status = 'pending'");
  s.bind(1, study).bind(2, id).bind(3, reason).bind(4, caused_by.empty() ? std::optional<std::string>() : caused_by);
  s.run();
  if (impl_->changes() != 1) return false;
  nlohmann::json data = nlohmann::json::object();
  if (!caused_by.empty()) data["caused_by"] = caused_by;
  impl_->insert_event(study, id, "prune", reason, data);
  tx.commit();
  return true;
}

bool Store::mark_unpruned(const std::string& study, const std::string& id, const std::string& message,
                          const nlohmann::json& data) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto s = impl_->prepare(
      "UPDATE trials SET status = 'pending', reason = '', pruned_by = NULL "
      "WHERE study = ?1 AND id = ?2 AND status = 'pruned'");
  s.bind(1, study).bind(2, id);
  s.run();
  if (impl_->changes() != 1) return false;
  impl_->insert_event(study, id, "unprune", message, data);
  tx.commit();
  return true;
}

void Store::reset_to_pending(const std::string& study, const std::string& id, const std::string& reason) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  auto r = impl_->query_trial(study, id);
  if (!r) impl_->no_trial(study, id);
  auto s = impl_->prepare(
      "UPDATE trials SET status = 'pending', pgid = NULL, reason = ?3 "
      "WHERE study = ?1 AND id = ?2");
  s.bind(1, study).bind(2, id).bind(3, reason);
  s.run();
  impl_->insert_event(study, id, "reset", reason,
                      {{"previous_status", std::string(to_string(r->status))}, {"attempt", r->attempt}});
  tx.commit();
}

void Store::insert_ingested(const std::string& study, const TrialRecord& record) {
  std::lock_guard lock(impl_->mutex);
  Impl::Transaction tx(*impl_);
  impl_->require_study(study);
  int plan_index = -1;
  int attempt = std::max(1, record.attempt);
  bool replace = false;
  if (auto existing = impl_->query_trial(study, record.id)) {
    const bool failed_ingest = existing->status == TrialStatus::Failed && existing->source == "ingest";
    if (!failed_ingest && (existing->status != TrialStatus::Pending || existing->attempt != 0))
      throw InputError(impl_->path + ": trial '" + record.id + "' is already in study '" + study + "' (source " +
                       existing->source + ", status " + std::string(to_string(existing->status)) + ")");
    // A planned candidate not run yet: the hand run is its measurement (warm
    // start). A failed ingested run: this one is its next attempt.
    plan_index = existing->plan_index;
    if (failed_ingest) {
      // Updated in place: a delete would take the failed attempt's step rows with it.
      attempt = std::max(attempt, existing->attempt + 1);
      replace = true;
    } else {
      auto del = impl_->prepare("DELETE FROM trials WHERE study = ?1 AND id = ?2");
      del.bind(1, study).bind(2, record.id);
      del.run();
    }
  }
  auto s = impl_->prepare(
      replace ? "UPDATE trials SET plan_index = ?3, status = ?4, failure = ?5, reason = ?6, config_json = ?7, "
                "axes_json = ?8, attempt = ?9, log_dir = ?10, started_at = ?11, finished_at = ?12, wall_s = ?13, "
                "mfu = ?14, tps = ?15, tflops = ?16, memory_gib = ?17, memory_pct = ?18, alloc_retries = ?19, "
                "oom_errors = ?20, counted_steps = ?21, source = 'ingest', facts_json = ?22 "
                "WHERE study = ?1 AND id = ?2"
              : "INSERT INTO trials (study, id, plan_index, status, failure, reason, config_json, "
                "axes_json, attempt, log_dir, started_at, finished_at, wall_s, mfu, tps, tflops, "
                "memory_gib, memory_pct, alloc_retries, oom_errors, counted_steps, source, facts_json) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
                "?19, ?20, ?21, 'ingest', ?22)");
  s.bind(1, study).bind(2, record.id).bind(3, plan_index >= 0 ? plan_index : impl_->next_plan_index(study));
  s.bind(4, std::string(to_string(record.status)));
  if (record.failure == FailureClass::None)
    s.bind(5, nullptr);
  else
    s.bind(5, std::string(to_string(record.failure)));
  s.bind(6, record.reason).bind(7, config_to_json(record.config).dump());
  s.bind(8, axes_to_json(record.axes).dump()).bind(9, attempt).bind(10, record.log_dir);
  if (record.started_at.empty())
    s.bind(11, nullptr);
  else
    s.bind(11, record.started_at);
  s.bind(12, record.finished_at.empty() ? utc_now_iso8601() : record.finished_at);
  s.bind(13, record.wall_s);
  const TrialMetrics& m = record.metrics;
  s.bind(14, m.mfu).bind(15, m.tps).bind(16, m.tflops).bind(17, m.memory_gib);
  s.bind(18, m.memory_pct).bind(19, m.alloc_retries).bind(20, m.oom_errors);
  s.bind(21, m.counted_steps);
  s.bind(22, record.facts.is_null() ? std::string("{}") : record.facts.dump());
  s.run();
  for (const StepRow& row : record.steps) impl_->insert_step(study, record.id, attempt, row, 0);
  tx.commit();
}

}  // namespace partune
