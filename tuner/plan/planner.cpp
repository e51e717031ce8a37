#include "tuner/plan/planner.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "common/error.h"
#include "common/flavors.h"
#include "common/hash.h"
#include "common/job_keys.h"
#include "common/parallel_dims.h"
#include "common/printable.h"

namespace partune {

namespace {

using namespace keys;

// The planner refuses spaces larger than this before enumerating any point:
// a plan holds every legal candidate's config (about 4.5 KB each, measured:
// 1M points took 4.5 GB and a minute), and no study runs more than a few
// hundred trials.
constexpr int64_t kMaxPoints = 100'000;

// Unknown models still get the mesh-independent rules that need no model.
bool needs_no_model(const std::string& rule) { return rule == rules::kSeqLenDivisible || rule == rules::kGlobalBatch; }

std::string cell(const Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return printable(*s);
  if (const auto* l = std::get_if<StringList>(&v)) {
    std::string out;
    for (const auto& e : *l) out += (out.empty() ? "" : ",") + printable(e);
    return out.empty() ? "[]" : out;
  }
  return value_to_string(v);
}

std::string column_name(const std::string& key) { return keys::short_name(key); }

// Spellings that run the same job, written one way so that they get one id:
// the AC option "02" is every 2nd layer as "2" is (torchtitan reads it with
// int(), the trainer with from_chars); compile components are a set, written
// in torchtitan's order ("model", "loss", then any other by name) so that
// the usual spelling keeps the id it always had.
std::string same_run_ac_option(const std::string& option) {
  const size_t first = option.find_first_not_of('0');
  const bool digits = !option.empty() && option.find_first_not_of("0123456789") == std::string::npos;
  if (!digits) return option;
  return first == std::string::npos ? "0" : option.substr(first);
}
StringList same_run_components(StringList components) {
  auto rank = [](const std::string& c) { return c == "model" ? 0 : c == "loss" ? 1 : 2; };
  std::sort(components.begin(), components.end(),
            [&](const std::string& a, const std::string& b) { return rank(a) != rank(b) ? rank(a) < rank(b) : a < b; });
  components.erase(std::unique(components.begin(), components.end()), components.end());
  return components;
}

}  // namespace

const std::vector<std::string>& canonical_explicit_keys() {
  static const std::vector<std::string> keys = {kModelName, kModelFlavor, kLbs, kGbs, kSeqLen, kDpReplicate, kDpShard,
                                                kCp,        kTp,          kPp,  kEp,  kEtp,    kAcMode,      kCompile};
  return keys;
}

JobConfig canonicalize(const JobConfig& config, int world_size) {
  JobConfig c = config;
  ParallelDims d = parallel_dims_of(c);
  check_parallel_dims(d, world_size);  // resolves dp_shard = -1
  if (d.ep == 1) d.etp = 1;
  c.set(kDpReplicate, int64_t{d.dp_replicate});
  c.set(kDpShard, int64_t{d.dp_shard});
  c.set(kCp, int64_t{d.cp});
  c.set(kTp, int64_t{d.tp});
  c.set(kPp, int64_t{d.pp});
  c.set(kEp, int64_t{d.ep});
  c.set(kEtp, int64_t{d.etp});
  BatchShape b = batch_shape_of(c);
  if (b.global_batch_size == -1) c.set(kGbs, b.local_batch_size * dp_degree(d));

  const bool selective = c.get_string(kAcMode) == "selective";
  const bool compiled = c.get_bool(kCompile);
  if (!selective) c.erase(kAcOption);
  if (!compiled) c.erase(kCompileComponents);
  // State what the job depends on, even where it is torchtitan's default.
  for (const auto& key : canonical_explicit_keys())
    if (auto v = c.get(key)) c.set(key, *v);
  if (selective) c.set(kAcOption, Value{same_run_ac_option(c.get_string(kAcOption))});
  if (compiled) c.set(kCompileComponents, Value{same_run_components(c.get_list(kCompileComponents))});
  return c;
}

namespace {
// What a config's id hashes: explicit values equal to their default dropped,
// the canonical explicit keys (and the AC option / compile components where
// they matter) always written, so "unset" and "set to the default" agree.
JobConfig identity_form(const JobConfig& config) {
  JobConfig c = config;
  std::set<std::string> keep(canonical_explicit_keys().begin(), canonical_explicit_keys().end());
  if (c.get_string(kAcMode) == "selective") keep.insert(kAcOption);
  if (c.get_bool(kCompile)) keep.insert(kCompileComponents);
  std::vector<std::string> defaulted;
  for (const auto& [key, value] : c.values()) {
    if (keep.count(key)) continue;
    const KeySpec* spec = find_key_spec(key);
    if (spec && spec->default_value && *spec->default_value == value) defaulted.push_back(key);
  }
  for (const auto& key : defaulted) c.erase(key);
  for (const auto& key : keep)
    if (auto v = c.get(key)) c.set(key, *v);
  return c;
}
}  // namespace

std::string config_id(const JobConfig& canonical) { return fnv1a64_hex(identity_form(canonical).to_toml()); }

PlanResult plan(const Space& space, bool keep_rejected) {
  PlanResult result;
  const int world = space.hardware.world_size();
  const auto& axes = space.axes;

  int64_t points = 1;
  for (const auto& a : axes) {
    if (points > kMaxPoints / static_cast<int64_t>(a.values.size()))
      throw InputError(space.path + ": [space]: more than " + std::to_string(kMaxPoints) +
                       " points (the product of the axis lengths); narrow the axes");
    points *= static_cast<int64_t>(a.values.size());
  }

  struct FlavorInfo {
    std::optional<Flavor> flavor;
  };
  std::map<std::pair<std::string, std::string>, FlavorInfo> flavors;
  std::unordered_map<std::string, size_t> by_id;

  std::vector<size_t> idx(axes.size(), 0);
  auto reject = [&](const JobConfig& cfg, const RuleViolation& v) {
    ++result.rejected[v.rule];
    if (!keep_rejected) return;
    RejectedPoint p{config_id(cfg), {}, v.rule, v.message};
    for (size_t i = 0; i < axes.size(); ++i) p.axes[axes[i].key] = axes[i].values[idx[i]];
    result.rejected_points.push_back(std::move(p));
  };
  for (int64_t n = 0; n < points; ++n) {
    // Odometer: the last axis turns fastest.
    if (n > 0) {
      for (size_t i = axes.size(); i-- > 0;) {
        if (++idx[i] < axes[i].values.size()) break;
        idx[i] = 0;
      }
    }
    ++result.enumerated;
    JobConfig cfg = space.base;
    for (size_t i = 0; i < axes.size(); ++i) cfg.set(axes[i].key, axes[i].values[idx[i]]);

    ParallelDims dims = parallel_dims_of(cfg);
    if (auto v = check_parallel_dims(dims, world); !v.empty()) {
      reject(cfg, v.front());
      continue;
    }

    const std::string model = cfg.get_string(kModelName), name = cfg.get_string(kModelFlavor);
    auto [it, inserted] = flavors.try_emplace({model, name});
    if (inserted) {
      it->second.flavor = find_flavor(model, name);
      if (!it->second.flavor) {
        std::vector<std::string> known = flavor_names(model);
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        std::string what = known.empty() ? "unknown model \"" + model + "\""
                                         : "unknown flavor \"" + name + "\" of model \"" + model +
                                               "\" (known: " + list + "; \"<flavor>-L<n>\" sets the depth)";
        if (space.backend.kind == "embedded")
          throw InputError(space.path + ": key 'model.flavor': " + what + "; the embedded trainer cannot build it");
        result.notes.push_back(what + ": heads, kv-heads, experts and pipeline rules not checked (backend \"" +
                               space.backend.kind + "\" runs it as given)");
      }
    }
    std::vector<RuleViolation> model_violations;
    if (it->second.flavor) {
      model_violations = check_model_rules(dims, *it->second.flavor, batch_shape_of(cfg));
    } else {
      Flavor any;  // divides everything; only the model-free rules are kept
      any.n_heads = any.n_kv_heads = any.num_experts = any.top_k = 1;
      any.moe = true;
      for (auto& v : check_model_rules(dims, any, batch_shape_of(cfg)))
        if (needs_no_model(v.rule)) model_violations.push_back(std::move(v));
    }
    if (!model_violations.empty()) {
      reject(cfg, model_violations.front());
      continue;
    }

    JobConfig canon = canonicalize(cfg, world);
    std::string id = config_id(canon);
    if (auto seen = by_id.find(id); seen != by_id.end()) {
      if (!(identity_form(result.candidates[seen->second].config) == identity_form(canon)))
        throw std::logic_error("plan: FNV-1a 64 collision between two configs (id " + id + ")");
      ++result.duplicates;
      continue;
    }
    Candidate c;
    c.id = id;
    for (size_t i = 0; i < axes.size(); ++i) {
      // A dropped key (e.g. selective_ac_option under full AC) reads as its default.
      auto v = canon.get(axes[i].key);
      c.axes[axes[i].key] = v ? *v : axes[i].values[idx[i]];
    }
    c.config = std::move(canon);
    by_id.emplace(id, result.candidates.size());
    result.candidates.push_back(std::move(c));
  }
  return result;
}

nlohmann::json plan_to_json(const PlanResult& result) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const auto& c : result.candidates) {
    nlohmann::json config = nlohmann::json::object();
    for (const auto& [key, value] : c.axes) config[key] = value_to_json(value);
    candidates.push_back({{"id", c.id}, {"config", std::move(config)}});
  }
  nlohmann::json rejected = nlohmann::json::object();
  for (const auto& [rule, count] : result.rejected) rejected[rule] = count;
  nlohmann::json j = {{"candidates", std::move(candidates)}, {"rejected", std::move(rejected)}};
  if (!result.rejected_points.empty()) {
    nlohmann::json points = nlohmann::json::array();
    for (const auto& p : result.rejected_points) {
      nlohmann::json config = nlohmann::json::object();
      for (const auto& [key, value] : p.axes) config[key] = value_to_json(value);
      points.push_back({{"id", p.id}, {"config", std::move(config)}, {"rule", p.rule}, {"message", p.message}});
    }
    j["rejected_points"] = std::move(points);
  }
  return j;
}

std::string plan_to_table(const PlanResult& result, const Space& space, const std::vector<PlanColumn>& extra,
                          const std::vector<std::string>& footer) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"id"};
  for (const auto& a : space.axes) header.push_back(column_name(a.key));
  for (const auto& col : extra) header.push_back(col.header);
  rows.push_back(header);
  for (size_t i = 0; i < result.candidates.size(); ++i) {
    const Candidate& c = result.candidates[i];
    std::vector<std::string> row = {c.id};
    for (const auto& a : space.axes) {
      auto it = c.axes.find(a.key);
      row.push_back(it == c.axes.end() ? "" : cell(it->second));
    }
    for (const auto& col : extra) row.push_back(i < col.cells.size() ? col.cells[i] : "");
    rows.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());

  std::ostringstream out;
  out << "plan for " << space.path << ": study " << space.study.name << ", world size " << space.hardware.world_size()
      << " (" << space.hardware.devices << " devices x " << space.hardware.nodes << " node"
      << (space.hardware.nodes == 1 ? "" : "s") << "), backend " << space.backend.kind << "\n\n";
  if (!result.candidates.empty()) {
    for (const auto& r : rows) {
      std::string line;
      for (size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
      }
      out << line << "\n";
    }
    out << "\n";
  }
  int64_t rejected = 0;
  for (const auto& [rule, count] : result.rejected) rejected += count;
  out << result.candidates.size() << " candidate" << (result.candidates.size() == 1 ? "" : "s") << " from "
      << result.enumerated << " point" << (result.enumerated == 1 ? "" : "s") << ": " << rejected << " rejected, "
      << result.duplicates << " duplicate" << (result.duplicates == 1 ? "" : "s") << "\n";
  if (!result.rejected.empty()) {
    size_t w = 0;
    for (const auto& [rule, count] : result.rejected) w = std::max(w, rule.size());
    out << "rejected by rule:\n";
    for (const auto& [rule, count] : result.rejected)
      out << "  " << rule << std::string(w - rule.size() + 2, ' ') << count << "\n";
  }
  for (const auto& note : result.notes) out << "note: " << printable(note) << "\n";
  for (const auto& line : footer) out << line << "\n";
  return out.str();
}

}  // namespace partune
