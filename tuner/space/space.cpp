#include "tuner/space/space.h"

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>

#include "common/error.h"
#include "common/job_values.h"
#include "common/toml_text.h"
#include "tuner/launch/placeholders.h"
#include "tuner/search/strategy.h"
#include "tuner/space/duration.h"
#include "tuner/space/launcher_section.h"
#include "tuner/space/validate.h"

namespace partune {

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string node_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date/time";
  }
}

// Reads one space file; every error names path:line:col and the dotted key.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  std::string where(const toml::source_region& r) const {
    return path_ + ":" + std::to_string(r.begin.line ? r.begin.line : 1) + ":" +
           std::to_string(r.begin.column ? r.begin.column : 1);
  }
  [[noreturn]] void fail(const toml::source_region& r, std::string_view key, std::string_view reason) const {
    throw InputError(where(r) + ": key '" + std::string(key) + "': " + std::string(reason));
  }
  [[noreturn]] void unknown(const toml::key& k, const std::string& key, const std::vector<std::string>& known) const {
    fail(k.source(), key, "unknown key (known: " + join(known) + ")");
  }

  std::string str(const toml::node& n, const std::string& key) const {
    auto v = n.value_exact<std::string>();
    if (!v) fail(n.source(), key, "expected a string, got " + node_type_name(n));
    if (auto why = nul_problem(*v)) fail(n.source(), key, *why);
    return *v;
  }
  bool boolean(const toml::node& n, const std::string& key) const {
    if (auto v = n.value_exact<bool>()) return *v;
    fail(n.source(), key, "expected a boolean, got " + node_type_name(n));
  }
  int64_t integer(const toml::node& n, const std::string& key, int64_t lo,
                  int64_t hi = std::numeric_limits<int64_t>::max()) const {
    auto v = n.value_exact<int64_t>();
    if (!v) fail(n.source(), key, "expected an integer, got " + node_type_name(n));
    if (*v < lo || *v > hi) {
      std::string range = hi == std::numeric_limits<int64_t>::max()
                              ? "must be >= " + std::to_string(lo)
                              : "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
      fail(n.source(), key, range + ", got " + std::to_string(*v));
    }
    return *v;
  }
  // A positive number (integer or float).
  double positive(const toml::node& n, const std::string& key) const {
    double d = 0;
    if (auto i = n.value_exact<int64_t>())
      d = static_cast<double>(*i);
    else if (auto f = n.value_exact<double>())
      d = *f;
    else
      fail(n.source(), key, "expected a number, got " + node_type_name(n));
    if (!(d > 0) || d == std::numeric_limits<double>::infinity())
      fail(n.source(), key, "must be a positive number, got " + std::to_string(d));
    return d;
  }
  // A duration: "8h" / "90m" / "1h30m", or a number of seconds (as text or
  // a TOML number); the range of every limit (duration.h), as on the
  // command line.
  double duration(const toml::node& n, const std::string& key) const {
    double d = 0;
    if (auto text = n.value_exact<std::string>()) {
      auto parsed = parse_duration(*text);
      if (!parsed)
        fail(n.source(), key, "expected a duration such as \"8h\", \"90m\" or seconds > 0, got \"" + *text + "\"");
      d = *parsed;
    } else if (auto i = n.value_exact<int64_t>()) {
      d = static_cast<double>(*i);
    } else if (auto f = n.value_exact<double>()) {
      d = *f;
    } else {
      fail(n.source(), key, "expected a duration such as \"8h\", \"90m\" or seconds > 0, got " + node_type_name(n));
    }
    if (auto why = duration_problem(d); !why.empty()) fail(n.source(), key, why);
    return d;
  }
  std::string choice(const toml::node& n, const std::string& key, const std::vector<std::string>& choices) const {
    std::string v = str(n, key);
    if (std::find(choices.begin(), choices.end(), v) == choices.end())
      fail(n.source(), key, "\"" + v + "\" is not one of " + join(choices));
    return v;
  }
  std::vector<std::string> strings(const toml::node& n, const std::string& key) const {
    const toml::array* a = n.as_array();
    if (!a) fail(n.source(), key, "expected an array of strings, got " + node_type_name(n));
    std::vector<std::string> out;
    for (const toml::node& e : *a) out.push_back(str(e, key));
    return out;
  }
  const toml::table& table(const toml::node& n, const std::string& key) const {
    if (const toml::table* t = n.as_table()) return *t;
    fail(n.source(), key, "expected a table, got " + node_type_name(n));
  }

  // A TOML value as a job-config Value (lists are lists of strings).
  Value value(const toml::node& n, const std::string& key) const {
    if (auto v = n.value_exact<bool>()) return *v;
    if (auto v = n.value_exact<int64_t>()) return *v;
    if (auto v = n.value_exact<double>()) return *v;
    if (n.is_string()) return str(n, key);
    if (n.is_array()) return strings(n, key);
    fail(n.source(), key, "expected a boolean, number, string or list of strings, got " + node_type_name(n));
  }

  // Placeholders: "{name}" must name a known one; a lone "{" is an error.
  void check_placeholders(const toml::node& n, const std::string& key, const std::string& s) const {
    std::vector<std::string> known;
    for (const auto& n : backend_placeholders()) known.push_back("{" + n + "}");
    for (size_t i = s.find('{'); i != std::string::npos; i = s.find('{', i + 1)) {
      size_t close = s.find('}', i);
      if (close == std::string::npos)
        fail(n.source(), key, "unclosed \"{\" in \"" + s + "\" (placeholders: " + join(known) + ")");
      std::string name = s.substr(i, close - i + 1);
      if (std::find(known.begin(), known.end(), name) == known.end())
        fail(n.source(), key, "unknown placeholder " + name + " (known: " + join(known) + ")");
    }
  }

  void read(const toml::table& root, Space& s) const;

 private:
  void read_study(const toml::table& t, Space& s) const;
  void read_hardware(const toml::table& t, Space& s) const;
  // [backend], or [confirm] (section "confirm": its backend keys plus top_k).
  void read_backend(const toml::table& t, const std::string& section, BackendSpec& b, int* top_k) const;
  void read_trial(const toml::table& t, Space& s) const;
  void read_prune(const toml::table& t, Space& s) const;
  void read_base(const toml::table& t, Space& s) const;
  void read_space(const toml::table& t, Space& s) const;
  void read_search(const toml::table& t, Space& s) const;
  void read_base_section(const toml::table& t, const std::string& prefix, JobConfig& inline_cfg) const;
  void collect_axes(const toml::table& t, const std::string& prefix,
                    std::vector<std::pair<const toml::node*, std::string>>& out) const;

  std::string path_;
  mutable std::map<std::string, std::string> origins_;  // [base] keys read so far -> where
};

const std::vector<std::string> kSections = {"study", "trial", "hardware", "backend", "prune",
                                            "base",  "space", "search",   "confirm", "launcher"};

void Reader::read(const toml::table& root, Space& s) const {
  const toml::table* study = nullptr;
  for (auto&& [k, v] : root) {
    const std::string name(k.str());
    if (std::find(kSections.begin(), kSections.end(), name) == kSections.end())
      fail(k.source(), name, "unknown section (known: " + join(kSections) + ")");
    table(v, name);
  }
  // Sections in dependency order: backend before base (embedded checks), study first.
  if (const toml::node* n = root.get("study")) {
    study = n->as_table();
    read_study(*study, s);
  }
  if (!study || !study->contains("name"))
    fail(study ? study->source() : toml::source_region{}, "study.name", "required key missing");
  if (const toml::node* n = root.get("hardware")) read_hardware(*n->as_table(), s);
  if (const toml::node* n = root.get("backend")) read_backend(*n->as_table(), "backend", s.backend, nullptr);
  if (const toml::node* n = root.get("confirm")) {
    s.confirm.emplace();
    read_backend(*n->as_table(), "confirm", s.confirm->backend, &s.confirm->top_k);
  }
  if (const toml::node* n = root.get("launcher")) read_launcher_section(*n->as_table(), path_, s.launcher);
  if (s.backend.emulate && s.launcher.kind != "local")
    fail(root.at_path("backend.emulate").node()->source(), "backend.emulate",
         "an emulated rank runs on one local device: [launcher] kind must be \"local\"");
  const toml::node* nodes = root.at_path("hardware.nodes").node();
  check_launcher_fits(s.launcher, s.hardware, where(nodes ? nodes->source() : toml::source_region{}));
  if (const toml::node* n = root.get("trial")) read_trial(*n->as_table(), s);
  if (const toml::node* n = root.get("prune")) read_prune(*n->as_table(), s);
  if (const toml::node* n = root.get("base")) read_base(*n->as_table(), s);
  if (const toml::node* n = root.get("space")) read_space(*n->as_table(), s);
  if (const toml::node* n = root.get("search")) read_search(*n->as_table(), s);
  if (s.study.db_path.empty()) s.study.db_path = "results/" + s.study.name + ".db";
}

void Reader::read_study(const toml::table& t, Space& s) const {
  for (auto&& [k, v] : t) {
    const std::string key = "study." + std::string(k.str());
    if (k == "name") {
      s.study.name = str(v, key);
      if (auto why = study_name_problem(s.study.name)) fail(v.source(), key, *why);
    } else if (k == "db") {
      s.study.db_path = str(v, key);
      if (s.study.db_path.empty()) fail(v.source(), key, "must not be empty");
    } else if (k == "objective") {
      s.study.objective = choice(v, key, {"mfu", "tps", "tflops"});
    } else {
      unknown(k, key, {"name", "db", "objective"});
    }
  }
}

void Reader::read_hardware(const toml::table& t, Space& s) const {
  for (auto&& [k, v] : t) {
    const std::string key = "hardware." + std::string(k.str());
    if (k == "device_type")
      s.hardware.device_type = choice(v, key, {"cuda", "cpu"});
    else if (k == "devices")
      s.hardware.devices = static_cast<int>(integer(v, key, 1, 1 << 20));
    else if (k == "nodes")
      s.hardware.nodes = static_cast<int>(integer(v, key, 1, 1 << 16));
    else if (k == "memory_gib")
      s.hardware.memory_gib = positive(v, key);
    else if (k == "peak_tflops")
      s.hardware.peak_tflops = positive(v, key);
    else
      unknown(k, key, {"device_type", "devices", "nodes", "memory_gib", "peak_tflops"});
  }
  if (int64_t{s.hardware.devices} * s.hardware.nodes > (1 << 20))
    fail(t.source(), "hardware.nodes", "devices * nodes is too large");
}

void Reader::read_backend(const toml::table& t, const std::string& section, BackendSpec& b, int* top_k) const {
  if (const toml::node* kind = t.get("kind"))
    b.kind = choice(*kind, section + ".kind", {"embedded", "torchtitan", "command"});
  // Keys that only one kind uses are errors for the others: nothing is ignored silently.
  auto only_for = [&](const toml::key& k, const std::string& key, const char* kind) {
    if (b.kind != kind)
      fail(k.source(), key, std::string("only used by kind = \"") + kind + "\" (this backend is \"" + b.kind + "\")");
  };
  for (auto&& [k, v] : t) {
    const std::string key = section + "." + std::string(k.str());
    if (k == "kind") continue;
    if (top_k && k == "top_k") {
      *top_k = static_cast<int>(integer(v, key, 1, 1000));
    } else if (k == "argv") {
      only_for(k, key, "command");
      b.argv = strings(v, key);
      if (b.argv.empty() || b.argv.front().empty()) fail(v.source(), key, "must name a program (argv[0] is empty)");
      for (const auto& a : b.argv) check_placeholders(v, key, a);
    } else if (k == "env") {
      for (auto&& [ek, ev] : table(v, key)) {
        const std::string ekey = key + "." + std::string(ek.str());
        if (auto why = env_name_problem(ek.str())) fail(ek.source(), ekey, *why);
        b.env[std::string(ek.str())] = str(ev, ekey);
        check_placeholders(ev, ekey, b.env[std::string(ek.str())]);
      }
    } else if (k == "trainer") {
      only_for(k, key, "embedded");
      b.trainer = str(v, key);
    } else if (k == "torchrun") {
      only_for(k, key, "torchtitan");
      b.torchrun = str(v, key);
      if (b.torchrun.empty()) fail(v.source(), key, "must not be empty");
    } else if (k == "torchrun_args") {
      only_for(k, key, "torchtitan");
      b.torchrun_args = strings(v, key);
      for (const auto& a : b.torchrun_args) check_placeholders(v, key, a);
    } else if (k == "module") {
      only_for(k, key, "torchtitan");
      b.module = str(v, key);
      if (b.module.empty()) fail(v.source(), key, "must not be empty");
    } else if (k == "workdir") {
      b.workdir = str(v, key);
    } else if (k == "emulate" && !top_k) {
      only_for(k, key, "embedded");
      b.emulate = boolean(v, key);
    } else {
      std::vector<std::string> known = {"kind",     "argv",          "env",    "trainer",
                                        "torchrun", "torchrun_args", "module", "workdir"};
      if (!top_k) known.push_back("emulate");
      if (top_k) known.push_back("top_k");
      unknown(k, key, known);
    }
  }
  // Placeholders are filled in argv, torchrun_args and env values only; a
  // brace in a path or module would stay literal, so it is refused.
  const std::pair<const char*, const std::string*> literal[] = {
      {"trainer", &b.trainer}, {"torchrun", &b.torchrun}, {"module", &b.module}, {"workdir", &b.workdir}};
  for (const auto& [name, value] : literal)
    if (value->find('{') != std::string::npos)
      fail(t.get(name)->source(), section + "." + name,
           "placeholders are filled in argv, torchrun_args and env values only, not here: \"" + *value + "\"");
  if (b.kind == "command" && b.argv.empty())
    fail(t.source(), section + ".argv", "required key missing (kind = \"command\" runs argv)");
}

void Reader::read_trial(const toml::table& t, Space& s) const {
  for (auto&& [k, v] : t) {
    const std::string key = "trial." + std::string(k.str());
    if (k == "steps")
      s.trial.steps = static_cast<int>(integer(v, key, 1, 1 << 30));
    else if (k == "warmup_steps")
      s.trial.warmup_steps = static_cast<int>(integer(v, key, 0, 1 << 30));
    else if (k == "timeout_s")
      s.trial.timeout_s = duration(v, key);
    else if (k == "hang_timeout_s")
      s.trial.hang_timeout_s = duration(v, key);
    else if (k == "repeats")
      s.trial.repeats = static_cast<int>(integer(v, key, 1, 1000));
    else
      unknown(k, key, {"steps", "warmup_steps", "timeout_s", "hang_timeout_s", "repeats"});
  }
  if (s.trial.warmup_steps >= s.trial.steps) {
    const toml::node* n = t.get("warmup_steps") ? t.get("warmup_steps") : t.get("steps");
    fail(n->source(), "trial.warmup_steps",
         "must be less than trial.steps (" + std::to_string(s.trial.warmup_steps) +
             " >= " + std::to_string(s.trial.steps) + "): no step would be counted");
  }
}

void Reader::read_prune(const toml::table& t, Space& s) const {
  for (auto&& [k, v] : t) {
    const std::string key = "prune." + std::string(k.str());
    if (k == "memory_headroom") {
      s.prune.memory_headroom = positive(v, key);
      if (s.prune.memory_headroom > 1)
        fail(v.source(), key, "must be in (0, 1], got " + std::to_string(s.prune.memory_headroom));
    } else if (k == "alloc_retries_over_limit") {
      s.prune.alloc_retries_over_limit = boolean(v, key);
    } else if (k == "before_launch") {
      s.prune.before_launch = boolean(v, key);
    } else {
      unknown(k, key, {"memory_headroom", "alloc_retries_over_limit", "before_launch"});
    }
  }
}

// Inline torchtitan sections: every leaf is one job-config key, set through
// JobConfig::set so the schema decides what is accepted.
void Reader::read_base_section(const toml::table& t, const std::string& prefix, JobConfig& cfg) const {
  for (auto&& [k, v] : t) {
    const std::string key = prefix + "." + std::string(k.str());
    if (const toml::table* sub = v.as_table()) {
      read_base_section(*sub, key, cfg);
      continue;
    }
    const Value value_read = value(v, key);
    cfg.set(key, value_read, where(v.source()));
    if (auto why = job_value_problem(key, *cfg.get(key))) fail(v.source(), key, *why);
    origins_[key] = where(v.source());
  }
}

void Reader::read_base(const toml::table& t, Space& s) const {
  JobConfig inline_cfg;
  for (auto&& [k, v] : t) {
    const std::string name(k.str());
    if (name == "config_file") {
      std::string file = str(v, "base.config_file");
      std::filesystem::path p(file);
      if (p.is_relative()) p = std::filesystem::path(path_).parent_path() / p;
      if (!std::filesystem::is_regular_file(p)) fail(v.source(), "base.config_file", "no such file: " + p.string());
      s.base = JobConfig::from_toml_file(p.string());
      // Its values are checked as the inline ones, located in that file.
      const auto located = toml_key_locations(p.string());
      for (const auto& [key, value] : s.base.values()) {
        auto at = located.find(key);
        const std::string where_set = at == located.end() ? p.string() : at->second;
        origins_[key] = where_set;
        if (auto why = job_value_problem(key, value)) throw InputError(where_set + ": key '" + key + "': " + *why);
      }
    } else if (const toml::table* section = v.as_table()) {
      read_base_section(*section, name, inline_cfg);
    } else {
      fail(k.source(), "base." + name,
           "unknown key ([base] takes config_file and torchtitan sections as [base.<section>])");
    }
  }
  s.base.merge(inline_cfg);
  s.origins.insert(origins_.begin(), origins_.end());
  origins_.clear();
}

void Reader::collect_axes(const toml::table& t, const std::string& prefix,
                          std::vector<std::pair<const toml::node*, std::string>>& out) const {
  for (auto&& [k, v] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = v.as_table())
      collect_axes(*sub, key, out);
    else
      out.emplace_back(&v, key);
  }
}

void Reader::read_space(const toml::table& t, Space& s) const {
  std::vector<std::pair<const toml::node*, std::string>> found;
  collect_axes(t, "", found);
  // toml++ tables are ordered by key; the axis order is the file's.
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    const auto& x = a.first->source().begin;
    const auto& y = b.first->source().begin;
    return std::tie(x.line, x.column) < std::tie(y.line, y.column);
  });
  std::set<std::string> seen;
  for (const auto& [node, key] : found) {
    s.origins["space." + key] = where(node->source());
    const std::string name = "space." + key;
    const KeySpec* spec = find_key_spec(key);
    if (!spec) fail(node->source(), name, "not a job-config key (see docs/search-space.md)");
    // Keys that cannot change a step (names, output places, logging sinks),
    // and for the embedded trainer every key it ignores: each value would run
    // the same trial under a different id.
    if (is_bookkeeping_key(key))
      fail(node->source(), name,
           "names or places a run's outputs and cannot change a training step: each value would run the same "
           "trial; set it in [base]");
    if (s.backend.kind == "embedded" && spec->trainer == TrainerSupport::Inert)
      fail(node->source(), name,
           "has no effect in the embedded trainer (docs/trainer.md): each value would run the same trial; "
           "set it in [base]");
    if (!seen.insert(key).second) fail(node->source(), name, "axis given twice");
    const toml::array* values = node->as_array();
    if (!values) fail(node->source(), name, "an axis is an array of values, got " + node_type_name(*node));
    if (values->empty()) fail(node->source(), name, "empty axis: give at least one value");
    if (values->size() > kMaxAxisValues)
      fail(node->source(), name,
           std::to_string(values->size()) + " values; an axis holds at most " + std::to_string(kMaxAxisValues));
    Axis axis{key, {}};
    std::set<Value> distinct;  // O(n log n): a long axis must not stall the loader
    for (const toml::node& e : *values) {
      JobConfig probe;  // the schema converts and checks the value
      probe.set(key, value(e, name), where(e.source()));
      Value v = *probe.get(key);
      if (auto why = job_value_problem(key, v)) fail(e.source(), name, *why);
      if (!distinct.insert(v).second) fail(e.source(), name, "duplicate value " + value_to_string(v));
      axis.values.push_back(std::move(v));
    }
    s.axes.push_back(std::move(axis));
  }
}

void Reader::read_search(const toml::table& t, Space& s) const {
  for (auto&& [k, v] : t) {
    const std::string key = "search." + std::string(k.str());
    if (k == "strategy")
      s.search.strategy = choice(v, key, strategy_names());
    else if (k == "max_trials")
      s.search.max_trials = integer(v, key, 1);
    else if (k == "seed")
      s.search.seed = static_cast<uint64_t>(integer(v, key, 0));
    else if (k == "confirm_top_k")
      s.search.confirm_top_k = static_cast<int>(integer(v, key, 0, 1000));
    else if (k == "time_budget")
      s.search.time_budget_s = duration(v, key);
    else
      unknown(k, key, {"strategy", "max_trials", "seed", "time_budget", "confirm_top_k"});
  }
}

}  // namespace

Space load_space_from_string(std::string_view text, const std::string& path) {
  reject_toml_control_characters(text, path);
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw InputError(path + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                     ": TOML syntax error: " + std::string(e.description()));
  }
  Space s;
  s.path = path;
  Reader(path).read(root, s);
  return s;
}

Space load_space(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read the search-space file");
  std::ostringstream text;
  text << in.rdbuf();
  return load_space_from_string(text.str(), path);
}

}  // namespace partune
