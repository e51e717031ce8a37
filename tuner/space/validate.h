// Checks of single values the space loader (space.cpp) applies where it reads
// them, so each refusal names the file, line and key. Each returns why a
// value is refused, or nullopt.
#pragma once
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace partune {

// An axis may hold at most this many values: beyond it a plan is hours of
// trials per point anyway, and the check stays cheap.
inline constexpr size_t kMaxAxisValues = 10'000;

// The longest study name: it names files ("<db>.<name>.lock", the results
// folder "<name>/"), and NAME_MAX is 255 bytes on Linux file systems.
inline constexpr size_t kMaxStudyNameLength = 100;

std::optional<std::string> study_name_problem(std::string_view name);

// A string that reaches an argv, an environment or a path: a NUL byte would
// cut it short where the kernel reads it.
std::optional<std::string> nul_problem(std::string_view s);

// An environment variable name: non-empty, no '=' (it would end the name),
// no NUL.
std::optional<std::string> env_name_problem(std::string_view name);

// Where each leaf key of a TOML file is set, "path:line:col", by dotted key
// (a [base] config_file, whose values are checked after it is loaded).
std::map<std::string, std::string> toml_key_locations(const std::string& path);

}  // namespace partune
