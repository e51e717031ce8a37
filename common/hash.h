// FNV-1a 64: the stable, dependency-free hash behind candidate ids and study
// tokens. Not cryptographic; ids are checked for collisions where they are made.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace partune {

inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;  // offset basis
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;  // prime
  }
  return h;
}

// 16 lower-case hex digits.
inline std::string fnv1a64_hex(std::string_view s) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(fnv1a64(s)));
  return buf;
}

}  // namespace partune
