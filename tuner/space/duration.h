// Durations as users write them for a time budget: "8h", "90m", "45s",
// "1h30m", "1.5h", or plain seconds ("3600", "3600.5").
#pragma once
#include <optional>
#include <string_view>

namespace partune {

// Seconds, or nullopt when the text is not such a duration (empty, a unit
// other than h/m/s, a negative or non-finite number, a unit given twice or
// out of order).
std::optional<double> parse_duration(std::string_view text);

}  // namespace partune
