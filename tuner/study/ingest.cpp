#include "tuner/study/ingest.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/flavors.h"
#include "common/hash.h"
#include "common/job_keys.h"
#include "tuner/parse/log_parser.h"
#include "tuner/store/store.h"

namespace partune {

const std::vector<std::string>& ingest_axis_keys() {
  static const std::vector<std::string> axis_keys = {
      keys::kDpReplicate, keys::kDpShard, keys::kTp,     keys::kCp,     keys::kEp,
      keys::kEtp,         keys::kLbs,     keys::kSeqLen, keys::kAcMode, keys::kCompile,
  };
  return axis_keys;
}

std::vector<std::string> ingest_runs(const IngestOptions& o, std::ostream& out) {
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
    // Same config and same log: the same run, so ingesting twice is a no-op.
    r.id = fnv1a64_hex(config.to_toml() + '\n' + text);
    r.config = config;
    for (const auto& k : ingest_axis_keys())
      if (auto v = config.get(k)) r.axes[k] = *v;
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

    if (store.trial(o.study, r.id)) {
      out << log_path << ": already ingested as trial " << r.id << "\n";
      ids.push_back(r.id);
      continue;
    }
    store.insert_ingested(o.study, r);
    if (!known_flavor) store.add_event(o.study, r.id, "info", r.facts["note"].get<std::string>());
    out << log_path << ": trial " << r.id << " " << to_string(r.status);
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
