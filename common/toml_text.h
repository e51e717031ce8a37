// Raw control characters are never valid TOML (only tab, and LF or CRLF line
// ends, may appear unescaped). Debian's toml++ asserts on some of them (a
// NUL in a table header) instead of reporting a syntax error, so the space
// loader and the job-config reader refuse them before parsing.
#pragma once
#include <string>
#include <string_view>

#include "common/error.h"

namespace partune {

// Throws InputError "source:line:col: control character U+00XX is not allowed
// in TOML (escape it inside a string)" for the first such byte.
inline void reject_toml_control_characters(std::string_view text, const std::string& source) {
  size_t line = 1, col = 1;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      const std::string code = std::string("U+00") + kHex[c >> 4] + kHex[c & 15];
      throw InputError(source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": control character " + code +
                       " is not allowed in TOML (escape it inside a string)");
    }
    if (c == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
}

}  // namespace partune
