// The wall-clock time as ISO 8601 UTC ("2026-11-25T20:49:12Z"): how the
// results database and exported files state when something happened.
#pragma once
#include <ctime>
#include <string>

namespace partune {

inline std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace partune
