#include "tuner/launch/command_backend.h"

#include <algorithm>

#include "common/error.h"
#include "tuner/launch/placeholders.h"

namespace partune {

namespace {

std::string value_of(const std::string& name, const TrialLaunchContext& ctx) {
  if (name == "config_file") return ctx.config_file;
  if (name == "devices") return std::to_string(ctx.devices);
  if (name == "nodes") return std::to_string(ctx.nodes);
  if (name == "trial_id") return ctx.trial_id;
  if (name == "log_dir") return ctx.log_dir;
  return ctx.device_type;  // "device_type": the list is checked first
}

std::string known_list() {
  std::string out;
  for (const auto& n : backend_placeholders()) out += (out.empty() ? "{" : " {") + n + "}";
  return out;
}

}  // namespace

std::string substitute_placeholders(const std::string& text, const TrialLaunchContext& ctx) {
  auto is_ident = [](char c, bool first) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
  };
  const auto& known = backend_placeholders();
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{') {
      size_t j = i + 1;
      while (j < text.size() && is_ident(text[j], j == i + 1)) ++j;
      if (j > i + 1 && j < text.size() && text[j] == '}') {
        const std::string name = text.substr(i + 1, j - i - 1);
        if (std::find(known.begin(), known.end(), name) == known.end())
          throw InputError("backend.argv: \"" + text + "\": unknown placeholder {" + name +
                           "} (known: " + known_list() + ")");
        out += value_of(name, ctx);
        i = j + 1;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

std::vector<ProcessSpec> CommandBackend::processes(const TrialLaunchContext& ctx) const {
  if (argv_.empty()) throw InputError("backend.argv: empty: the command backend needs a program to run");
  ProcessSpec p;
  for (const auto& a : argv_) p.argv.push_back(substitute_placeholders(a, ctx));
  for (const auto& [k, v] : env_) p.env[k] = substitute_placeholders(v, ctx);
  for (const auto& [k, v] : ctx.extra_env) p.env[k] = v;  // the tuner's own variables win
  p.cwd = workdir_;
  return {p};
}

}  // namespace partune
