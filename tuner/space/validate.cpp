#include "tuner/space/validate.h"

#include <toml++/toml.h>

#include <cctype>

namespace partune {

std::optional<std::string> study_name_problem(std::string_view name) {
  bool ok = !name.empty() && name != "." && name != "..";
  for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  if (!ok) return "\"" + std::string(name) + "\" must be non-empty and use only A-Z a-z 0-9 . _ -";
  if (name.size() > kMaxStudyNameLength)
    return "is " + std::to_string(name.size()) + " characters; at most " + std::to_string(kMaxStudyNameLength) +
           " (it names the study's files, and a file name holds 255 bytes)";
  return std::nullopt;
}

std::optional<std::string> nul_problem(std::string_view s) {
  if (s.find('\0') != std::string_view::npos)
    return "contains a NUL byte (\\u0000): an argv, path or environment cannot";
  return std::nullopt;
}

std::optional<std::string> env_name_problem(std::string_view name) {
  if (name.empty()) return "an environment variable needs a name";
  if (name.find('=') != std::string_view::npos) return "an environment variable name cannot contain '='";
  return nul_problem(name);
}

namespace {
void collect(const toml::table& t, const std::string& prefix, const std::string& path,
             std::map<std::string, std::string>& out) {
  for (const auto& [k, node] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = node.as_table()) {
      collect(*sub, key, path, out);
      continue;
    }
    const auto& b = node.source().begin;
    out[key] = path + ":" + std::to_string(b.line ? b.line : 1) + ":" + std::to_string(b.column ? b.column : 1);
  }
}
}  // namespace

std::map<std::string, std::string> toml_key_locations(const std::string& path) {
  std::map<std::string, std::string> out;
  try {
    collect(toml::parse_file(path), "", path, out);
  } catch (const toml::parse_error&) {
    // The job-config reader reports syntax errors; no locations then.
  }
  return out;
}

}  // namespace partune
