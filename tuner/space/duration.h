// Durations and counts as users write them, on the command line or in the
// space file: one parser and one range for each value, wherever it comes
// from (a time budget, a trial's limits, Slurm's time limit, a trial count).
// Durations: "8h", "90m", "45s", "1h30m", "1.5h", or plain seconds
// ("3600", "3600.5"). Decimal digits only: no sign, exponent, hex ("0x10"
// is not 16 s), inf or nan.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace partune {

// The longest duration any limit may be: a year. Past it is a typo or an
// overflow ("1e308h" printed a budget of -2147483648h).
inline constexpr double kMaxDurationS = 366.0 * 24 * 3600;

// Seconds, or nullopt when the text is not such a duration (empty, a unit
// other than h/m/s, a sign, an exponent, hex, a unit given twice or out of
// order). The range is duration_problem's.
std::optional<double> parse_duration(std::string_view text);

// Why `seconds` cannot be a limit ("must be more than 0 s, got 0"); "" when
// it can: more than 0, at most kMaxDurationS, finite.
std::string duration_problem(double seconds);

// A count written in decimal digits ("40"; not "+40", "0x28", "4e1", "40.0");
// nullopt when it is not one or does not fit an int64.
std::optional<int64_t> parse_count(std::string_view text);

}  // namespace partune
