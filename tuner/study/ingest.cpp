#include "tuner/study/ingest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/flavors.h"
#include "common/hash.h"
#include "common/job_keys.h"
#include "common/printable.h"
#include "tuner/parse/log_parser.h"
#include "tuner/plan/planner.h"
#include "tuner/space/space.h"
#include "tuner/store/store.h"

namespace partune {

const std::vector<std::string>& ingest_axis_keys() {
  static const std::vector<std::string> axis_keys = {
      keys::kDpReplicate, keys::kDpShard, keys::kTp,     keys::kCp,     keys::kEp,
      keys::kEtp,         keys::kLbs,     keys::kSeqLen, keys::kAcMode, keys::kCompile,
  };
  return axis_keys;
}

namespace {

struct Identity {
  std::string id;
  std::map<std::string, Value> axes;
  bool planned = false;  // the id of a candidate the space plans
};

// The world a config runs on when its degrees say so (no dp_shard = -1).
std::optional<int> world_of(const JobConfig& config) {
  const ParallelDims d = parallel_dims_of(config);
  if (d.dp_shard < 1 || d.dp_replicate < 1 || d.cp < 1 || d.tp < 1 || d.pp < 1) return std::nullopt;
  const int64_t w = int64_t{d.dp_replicate} * d.dp_shard * d.cp * d.tp * d.pp;
  if (w > (1 << 20)) return std::nullopt;
  return static_cast<int>(w);
}

Identity identify(const JobConfig& config, const std::string& log_text, const Space* space, const PlanResult* planned) {
  Identity out;
  auto canonical_for = [&](std::optional<int> world) -> std::optional<JobConfig> {
    if (!world) return std::nullopt;
    ParallelDims dims = parallel_dims_of(config);
    if (!check_parallel_dims(dims, *world).empty()) return std::nullopt;
    return canonicalize(config, *world);
  };
  // The study's world first; a config for another world is still one job
  // by its own degrees.
  std::optional<JobConfig> canonical =
      canonical_for(space ? std::optional<int>(space->hardware.world_size()) : std::nullopt);
  if (!canonical) canonical = canonical_for(world_of(config));
  if (canonical && planned) {
    for (const Candidate& c : planned->candidates) {
      bool same = canonical->get(keys::kModelName) == c.config.get(keys::kModelName) &&
                  canonical->get(keys::kModelFlavor) == c.config.get(keys::kModelFlavor);
      for (const auto& [key, value] : c.axes) same = same && canonical->get(key) == value;
      if (same) return {c.id, c.axes, true};
    }
  }
  for (const auto& k : ingest_axis_keys())
    if (auto v = (canonical ? *canonical : config).get(k)) out.axes[k] = *v;
  // Same config and same log: the same run, so ingesting twice is a no-op.
  out.id = canonical ? config_id(*canonical) : fnv1a64_hex(config.to_toml() + '\n' + log_text);
  return out;
}

// A run's log, whole. Only a regular file is a log: a FIFO without a writer
// blocked forever, /dev/zero grew without end, a folder read as an empty log
// (a failed trial). The FIFO is opened without blocking to be looked at.
std::string read_log(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot read log file: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw InputError(path + ": cannot read log file: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file (" +
                     (S_ISDIR(st.st_mode)    ? "a folder"
                      : S_ISFIFO(st.st_mode) ? "a FIFO"
                      : S_ISCHR(st.st_mode)  ? "a character device"
                      : S_ISSOCK(st.st_mode) ? "a socket"
                                             : "not a file") +
                     "), so not a log");
  }
  auto too_large = [&] {
    return InputError(path + ": larger than the " + std::to_string(kMaxIngestLogBytes >> 20) +
                      " MiB a log may be for tune ingest");
  };
  if (st.st_size > kMaxIngestLogBytes) {
    ::close(fd);
    throw too_large();
  }
  std::string text;
  char buf[1 << 16];
  while (true) {
    const ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(path + ": cannot read log file: " + std::strerror(err));
    }
    if (got == 0) break;
    text.append(buf, static_cast<size_t>(got));
    if (static_cast<int64_t>(text.size()) > kMaxIngestLogBytes) {  // it grows as it is read
      ::close(fd);
      throw too_large();
    }
  }
  ::close(fd);
  return text;
}

// The study's own space, as its last run recorded it: without --space, a
// run of a config the study plans still gets the planner's id (an exported
// trial ingested from two logs got two new ids). nullopt when the study has
// none or it no longer loads (then ids come from the config alone).
std::optional<Space> recorded_space(Store& store, const std::string& study, std::ostream& out) {
  const auto row = store.study(study);
  if (!row || row->space_text.empty()) return std::nullopt;
  try {
    return load_space_from_string(row->space_text, row->space_path);
  } catch (const InputError& e) {
    out << "note: the study's recorded space does not load (" << printable(e.what())
        << "); trial ids come from the config alone\n";
    return std::nullopt;
  }
}

}  // namespace

std::vector<std::string> ingest_runs(const IngestOptions& options, std::ostream& out) {
  IngestOptions o = options;
  std::optional<Space> space;
  std::optional<PlanResult> planned;
  if (!o.space_path.empty()) {
    space = load_space(o.space_path);
    if (o.db_path.empty()) o.db_path = space->study.db_path;
    if (o.study.empty()) o.study = space->study.name;
    planned = plan(*space);
  }
  if (o.db_path.empty() || o.study.empty()) throw InputError("tune ingest: give --space FILE, or --db and --study");
  if (o.logs.empty()) throw InputError("tune ingest: no LOG file given");
  const JobConfig config = JobConfig::from_toml_file(o.config_path);
  const std::string model = config.get_string("model.name");
  const std::string flavor = config.get_string("model.flavor");
  const bool known_flavor = find_flavor(model, flavor).has_value();

  // Every log is read before the db is touched: a typo in one creates nothing.
  std::vector<std::string> texts;
  for (const auto& log_path : o.logs) texts.push_back(read_log(log_path));

  Store store = Store::open(o.db_path);
  if (!space) {
    space = recorded_space(store, o.study, out);
    if (space) planned = plan(*space);
  }
  if (!store.study(o.study)) {
    StudyRow row;
    row.name = o.study;
    row.objective = "mfu";
    row.facts = {{"created_by", "tune ingest"}};
    store.ensure_study(row);
  }
  std::vector<std::string> ids;
  for (size_t i = 0; i < o.logs.size(); ++i) {
    const std::string& log_path = o.logs[i];
    const std::string& text = texts[i];

    TrialLogState state;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) state.feed(line);

    TrialRecord r;
    r.study = o.study;
    Identity who = identify(config, text, space ? &*space : nullptr, planned ? &*planned : nullptr);
    r.id = who.id;
    r.config = config;
    r.axes = who.axes;
    r.metrics = state.summarize(o.warmup_steps);
    r.failure = state.failure();
    r.reason = state.failure_message();
    if (r.failure == FailureClass::None && r.metrics.counted_steps == 0) {
      r.failure = FailureClass::Error;
      r.reason = "no step line after the " + std::to_string(o.warmup_steps) + " warmup steps in " + log_path;
    }
    r.status = r.failure == FailureClass::None ? TrialStatus::Done : TrialStatus::Failed;
    r.source = "ingest";
    r.attempt = 1;
    r.log_dir = std::filesystem::absolute(log_path).parent_path().string();
    r.steps = state.steps();
    r.facts = {{"log", std::filesystem::absolute(log_path).string()},
               {"config_file", std::filesystem::absolute(o.config_path).string()}};
    if (state.peak_flops() > 0) r.facts["peak_flops"] = state.peak_flops();
    if (!known_flavor)
      r.facts["note"] = "flavor '" + flavor + "' of model '" + model +
                        "' is not in partune's flavor table; ingested from the log's numbers only";

    std::optional<TrialRecord> existing = store.trial(o.study, r.id);
    // A failed ingested run (an empty log) gives way to a good run of the
    // same config; the failure stays as an event.
    const bool replaces_failure = existing && existing->status == TrialStatus::Failed && existing->source == "ingest" &&
                                  r.status == TrialStatus::Done;
    if (existing && existing->status != TrialStatus::Pending && !replaces_failure) {
      if (existing->source == "ingest" && existing->facts.value("log", "") == r.facts["log"].get<std::string>()) {
        out << log_path << ": already ingested as trial " << r.id << "\n";
      } else {  // another run of a measured config: kept, not overwriting the measurement
        nlohmann::json data = {{"log", r.facts["log"]}};
        if (r.metrics.mfu) data["mfu"] = *r.metrics.mfu;
        if (r.metrics.memory_gib) data["memory_gib"] = *r.metrics.memory_gib;
        store.add_event(o.study, r.id, "ingest_repeat", "another run of this config, from " + log_path, data);
        out << log_path << ": trial " << r.id << " already has a result (source " << existing->source << ", "
            << to_string(existing->status) << "); this run is kept as an event of it\n";
      }
      ids.push_back(r.id);
      continue;
    }
    store.insert_ingested(o.study, r);
    if (replaces_failure)
      store.add_event(o.study, r.id, "ingest_replaced",
                      "a failed ingested run (" + existing->reason + ") replaced by a good one from " + log_path,
                      {{"log", existing->facts.value("log", "")}, {"reason", existing->reason}});
    if (!known_flavor) store.add_event(o.study, r.id, "info", r.facts["note"].get<std::string>());
    out << log_path << ": trial " << r.id << " " << to_string(r.status);
    if (who.planned) out << " (a planned candidate of the study: warm start)";
    if (r.metrics.mfu) out << ", mfu " << *r.metrics.mfu << "%";
    if (r.metrics.memory_gib) out << ", memory " << *r.metrics.memory_gib << " GiB";
    out << ", " << r.steps.size() << " step rows";
    if (!known_flavor) out << " (unknown flavor '" << flavor << "': noted)";
    out << "\n";
    ids.push_back(r.id);
  }
  return ids;
}

}  // namespace partune
