// Checks on TOML text before toml++ (3.3.0, Debian 12) parses it, for input
// that library does not report as an error but asserts on (debug builds) or
// assumes away (release builds: undefined behaviour), as the fuzz targets
// found:
// - raw control characters (only tab, and LF or CRLF line ends, are TOML);
// - a table header whose first key does not start like a key: "[#x]",
//   "[[.x]]", "[ !x]", "[éx]";
// - a non-ASCII character outside strings and comments ("[optimiz\uFEEE]"
//   reaches an unreachable branch of its Unicode tables). TOML 1.0 allows
//   them nowhere else either: bare keys are ASCII;
// - in a multi-line basic string, '\' before a non-ASCII character (the same
//   table, looking for a line-ending backslash);
// - a '}' where an array is open, a ']' where an inline table is ("[1,}":
//   toml++ assumes an array element does not start with '}').
// The space loader and the job-config reader call it first.
#pragma once
#include <string>
#include <string_view>

#include "common/error.h"

namespace partune {

namespace toml_text_detail {

inline std::string where(const std::string& source, size_t line, size_t col) {
  return source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
}

inline bool starts_a_key(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '"' || c == '\'' || c == ']';  // "[]" is reported by the parser itself
}

}  // namespace toml_text_detail

// Throws InputError "source:line:col: <what>" for the first problem above.
inline void reject_toml_control_characters(std::string_view text, const std::string& source) {
  using toml_text_detail::where;
  size_t line = 1, line_begin = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      const std::string code = std::string("U+00") + kHex[c >> 4] + kHex[c & 15];
      throw InputError(where(source, line, i - line_begin + 1) + "control character " + code +
                       " is not allowed in TOML (escape it inside a string)");
    }
    if (c == '\n') {
      ++line;
      line_begin = i + 1;
    }
  }

  // Table headers: a line that starts with '[' outside any value (array,
  // inline table, multi-line string). A small scan keeps that state.
  enum class In { Top, MultiBasic, MultiLiteral } in = In::Top;
  std::string open;         // the '[' and '{' open at this point, innermost last
  char prev = '\n';         // the last structural character ('x': a bare token)
  bool token_start = true;  // at the start of a token: after space or structure
  bool key_pos = true;      // a key is read here, not a value
  bool line_start = true;
  line = 1;
  line_begin = 0;
  size_t i = text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
  auto at = [&](size_t k, std::string_view s) { return text.substr(k, s.size()) == s; };
  auto newline = [&](size_t k) {
    ++line;
    line_begin = k + 1;
    line_start = true;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (in != In::Top) {
      if (c == '\n') newline(i);
      if (in == In::MultiBasic && c == '\\') {
        if (i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80)
          throw InputError(where(source, line, i - line_begin + 1) +
                           "'\\' before a non-ASCII character is no escape (write \\uXXXX)");
        if (i + 1 < text.size() && text[i + 1] == '\n') newline(i + 1);
        i += 2;
        continue;
      }
      if (at(i, in == In::MultiBasic ? "\"\"\"" : "'''")) {
        in = In::Top;
        i += 3;
        continue;
      }
      ++i;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      token_start = true;
      ++i;
      continue;
    }
    if (line_start && open.empty() && c == '[') {
      size_t k = i + 1;
      if (k < text.size() && text[k] == '[') ++k;
      const size_t brackets = k - i;
      while (k < text.size() && (text[k] == ' ' || text[k] == '\t')) ++k;
      if (k < text.size() && !toml_text_detail::starts_a_key(static_cast<unsigned char>(text[k])))
        throw InputError(where(source, line, k - line_begin + 1) +
                         "a table header must start with a key (a bare key or a quoted one)");
      open.append(brackets, '[');  // closed by the header's ']'
      i += brackets;
      line_start = false;
      prev = '[';
      token_start = key_pos = true;
      continue;
    }
    line_start = false;
    if (c == '\n') {
      newline(i);
      prev = '\n';
      token_start = true;
      key_pos = open.empty() || open.back() == '{';
      ++i;
      continue;
    }
    if (c == '#') {
      while (i < text.size() && text[i] != '\n') ++i;
      continue;
    }
    // A quote opens a string only at the start of a key or value, as toml++
    // sees it; anywhere else toml++ is reading a bare token (a key, number,
    // boolean or date) and reads on through it.
    const bool may_open =
        token_start && (prev == '\n' || prev == '=' || prev == '[' || prev == '{' || prev == ',' || prev == '.');
    if (may_open && (c == '"' || c == '\'')) {
      if (at(i, c == '"' ? "\"\"\"" : "'''")) {
        in = c == '"' ? In::MultiBasic : In::MultiLiteral;
        i += 3;
      } else {
        ++i;
        while (i < text.size() && text[i] != c && text[i] != '\n') i += c == '"' && text[i] == '\\' ? 2 : 1;
        if (i < text.size() && text[i] == c) ++i;
      }
      prev = c;
      token_start = false;
      continue;
    }
    if (token_start && (c == '[' || c == '{' || c == ']' || c == '}' || c == ',' || c == '=' || c == '.')) {
      if (c == '[' || c == '{') open += c;
      if ((c == ']' || c == '}') && !open.empty()) {
        if (open.back() != (c == ']' ? '[' : '{'))
          throw InputError(where(source, line, i - line_begin + 1) + "'" + c + "' where a '" + open.back() +
                           "' is open");
        open.pop_back();
      }
      if (c == '{') key_pos = true;
      if (c == '[' || c == '=' || c == ']' || c == '}') key_pos = false;
      if (c == ',') key_pos = !open.empty() && open.back() == '{';
      prev = c;
      ++i;
      continue;
    }
    // A bare token: up to what ends a value (or, in a key, a '.').
    while (i < text.size()) {
      const char t = text[i];
      if (t == ' ' || t == '\t' || t == '\r' || t == '\n' || t == ',' || t == ']' || t == '}' || t == '#' || t == '=' ||
          (key_pos && t == '.'))
        break;
      if (static_cast<unsigned char>(t) >= 0x80)
        throw InputError(where(source, line, i - line_begin + 1) +
                         "a non-ASCII character outside a string or comment (TOML keys are ASCII; quote the key)");
      ++i;
    }
    prev = 'x';
    token_start = true;  // what ended the token is read next, as structure
  }
}

}  // namespace partune
