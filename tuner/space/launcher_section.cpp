#include "tuner/space/launcher_section.h"

#include <cmath>

#include "common/error.h"
#include "common/printable.h"
#include "tuner/space/duration.h"

namespace partune {

namespace {

std::string where(const std::string& path, const toml::source_region& r) {
  return path + ":" + std::to_string(r.begin.line ? r.begin.line : 1) + ":" +
         std::to_string(r.begin.column ? r.begin.column : 1);
}

[[noreturn]] void fail(const std::string& path, const toml::source_region& r, const std::string& key,
                       const std::string& reason) {
  throw InputError(where(path, r) + ": key '" + key + "': " + reason);
}

std::string text(const toml::node& n, const std::string& path, const std::string& key) {
  if (auto v = n.value_exact<std::string>()) return *v;
  fail(path, n.source(), key, "expected a string");
}

}  // namespace

void read_launcher_section(const toml::table& t, const std::string& path, LauncherSpec& out) {
  if (const toml::node* kind = t.get("kind")) {
    out.kind = text(*kind, path, "launcher.kind");
    if (out.kind != "local" && out.kind != "slurm")
      fail(path, kind->source(), "launcher.kind", "\"" + out.kind + "\" is not one of local, slurm");
  }
  // Slurm's keys on a local launcher would be ignored: an error instead.
  auto slurm_only = [&](const toml::key& k, const std::string& key) {
    if (out.kind != "slurm")
      fail(path, k.source(), key, "only used by kind = \"slurm\" (this launcher is \"" + out.kind + "\")");
  };
  for (auto&& [k, v] : t) {
    const std::string key = "launcher." + std::string(k.str());
    if (k == "kind") continue;
    if (k == "partition" || k == "account") {
      slurm_only(k, key);
      std::string s = text(v, path, key);
      if (s.empty() || s.find_first_of(" \t\n,") != std::string::npos)
        fail(path, v.source(), key, "\"" + s + "\" must be one non-empty Slurm name");
      (k == "partition" ? out.partition : out.account) = s;
    } else if (k == "time_limit") {
      slurm_only(k, key);
      std::optional<double> s;
      if (auto str = v.value_exact<std::string>())
        s = parse_duration(*str);
      else if (auto i = v.value_exact<int64_t>())
        s = static_cast<double>(*i);
      else if (auto f = v.value_exact<double>())
        s = *f;
      if (!s) fail(path, v.source(), key, "expected a duration such as \"30m\", \"2h\" or seconds > 0");
      // One range for every limit (1e308 became srun --time=-9223372036854775808).
      if (auto why = duration_problem(*s); !why.empty()) fail(path, v.source(), key, why);
      out.time_limit_s = *s;
    } else if (k == "extra_args") {
      slurm_only(k, key);
      const toml::array* a = v.as_array();
      if (!a) fail(path, v.source(), key, "expected an array of strings (srun's argv, never a shell string)");
      out.extra_args.clear();
      for (const toml::node& e : *a) {
        std::string s = text(e, path, key);
        if (s.empty()) fail(path, e.source(), key, "an empty argument");
        // A NUL would end the argument where srun reads it; tune fills no
        // placeholder in srun's own options, so a brace would stay literal.
        if (s.find('\0') != std::string::npos)
          fail(path, e.source(), key, "a NUL character in \"" + printable(s) + "\" (srun would see it cut there)");
        if (s.find('{') != std::string::npos)
          fail(path, e.source(), key,
               "placeholders are filled in [backend] argv, torchrun_args and env values only, not in srun's "
               "extra_args: \"" +
                   printable(s) + "\"");
        out.extra_args.push_back(std::move(s));
      }
    } else if (k == "parallel_trials") {
      auto n = v.value_exact<int64_t>();
      if (!n) fail(path, v.source(), key, "expected an integer");
      if (*n < 1 || *n > 4096) fail(path, v.source(), key, "must be in [1, 4096], got " + std::to_string(*n));
      out.parallel_trials = static_cast<int>(*n);
    } else {
      fail(path, k.source(), key,
           "unknown key (known: kind, partition, account, time_limit, extra_args, parallel_trials)");
    }
  }
}

void check_launcher_fits(const LauncherSpec& launcher, const HardwareSpec& hardware, const std::string& nodes_at) {
  if (hardware.nodes > 1 && launcher.kind != "slurm")
    throw InputError(nodes_at + ": key 'hardware.nodes': " + std::to_string(hardware.nodes) +
                     " nodes need [launcher] kind = \"slurm\" (the local launcher runs every process on this "
                     "machine and would start nothing on the others)");
}

}  // namespace partune
