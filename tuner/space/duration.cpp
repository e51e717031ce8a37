#include "tuner/space/duration.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace partune {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "12", "12.5", ".5", "12.": at least one digit, at most one '.'. Returns
// the length read (0: no number here).
size_t decimal_length(std::string_view s) {
  size_t i = 0, digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  }
  return digits > 0 ? i : 0;
}

}  // namespace

std::optional<double> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  double total = 0;
  int last_unit = -1;  // 0 h, 1 m, 2 s: units must come in this order, once each
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = decimal_length(text.substr(i));
    if (n == 0) return std::nullopt;
    // Checked above to be digits and one '.': strtod reads exactly those.
    const double v = std::strtod(std::string(text.substr(i, n)).c_str(), nullptr);
    i += n;
    if (i == text.size()) {
      if (last_unit >= 0) return std::nullopt;  // "1h30": a number without unit after a unit
      return v;
    }
    const char u = text[i];
    const int unit = u == 'h' ? 0 : u == 'm' ? 1 : u == 's' ? 2 : -1;
    if (unit < 0 || unit <= last_unit) return std::nullopt;
    last_unit = unit;
    total += v * (unit == 0 ? 3600.0 : unit == 1 ? 60.0 : 1.0);
    ++i;
  }
  return total;
}

std::string duration_problem(double seconds) {
  auto shown = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  if (std::isnan(seconds)) return "must be a number of seconds, got nan";
  if (!(seconds > 0)) return "must be more than 0 s, got " + shown(seconds);
  if (seconds > kMaxDurationS)
    return "must be at most " + shown(kMaxDurationS) + " s (366 days), got " + shown(seconds) + " s";
  return "";
}

std::optional<int64_t> parse_count(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int64_t v = 0;
  for (char c : text) {
    if (!is_digit(c)) return std::nullopt;
    const int d = c - '0';
    if (v > (std::numeric_limits<int64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace partune
