#include "tuner/space/duration.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace partune {

std::optional<double> parse_duration(std::string_view text) {
  const std::string s(text);
  if (s.empty()) return std::nullopt;
  const char* p = s.c_str();
  const char* end = p + s.size();
  double total = 0;
  int last_unit = -1;  // 0 h, 1 m, 2 s: units must come in this order, once each
  bool any = false;
  while (p < end) {
    if (!(std::isdigit(static_cast<unsigned char>(*p)) || *p == '.')) return std::nullopt;
    char* after = nullptr;
    const double v = std::strtod(p, &after);
    if (after == p || !std::isfinite(v) || v < 0) return std::nullopt;
    p = after;
    if (p == end) {
      if (any) return std::nullopt;  // "1h30": a number without unit after a unit
      return v;
    }
    const int unit = *p == 'h' ? 0 : *p == 'm' ? 1 : *p == 's' ? 2 : -1;
    if (unit < 0 || unit <= last_unit) return std::nullopt;
    last_unit = unit;
    total += v * (unit == 0 ? 3600.0 : unit == 1 ? 60.0 : 1.0);
    any = true;
    ++p;
  }
  return total;
}

}  // namespace partune
