#include "tuner/study/ingest.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/flavors.h"
#include "common/hash.h"
#include "common/job_keys.h"
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
  const std::optional<int> world = space ? std::optional<int>(space->hardware.world_size()) : world_of(config);
  std::optional<JobConfig> canonical;
  if (world) {
    ParallelDims dims = parallel_dims_of(config);
    if (check_parallel_dims(dims, *world).empty()) canonical = canonicalize(config, *world);
  }
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
  for (const auto& log_path : o.logs) {
    std::ifstream f(log_path, std::ios::binary);
    if (!f) throw InputError(log_path + ": cannot read log file");
    std::stringstream ss;
    ss << f.rdbuf();
    texts.push_back(ss.str());
  }

  Store store = Store::open(o.db_path);
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

    if (auto existing = store.trial(o.study, r.id); existing && existing->status != TrialStatus::Pending) {
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
