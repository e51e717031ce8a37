// libFuzzer target: the job-config writer/reader round trip. Any text the
// reader accepts is a table; writing it (to_toml) and reading that back must
// give the same table, and writing again the same text. A failure aborts
// with both texts on stderr.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "common/error.h"
#include "common/job_config.h"

namespace {

// Value equality where NaN equals NaN (a NaN read back is the same value).
bool same(const partune::Value& a, const partune::Value& b) {
  if (a.index() != b.index()) return false;
  if (const double* x = std::get_if<double>(&a)) {
    const double y = std::get<double>(b);
    return (std::isnan(*x) && std::isnan(y)) || *x == y;
  }
  return a == b;
}

bool same(const partune::JobConfig& a, const partune::JobConfig& b) {
  if (a.values().size() != b.values().size()) return false;
  for (auto ia = a.values().begin(), ib = b.values().begin(); ia != a.values().end(); ++ia, ++ib)
    if (ia->first != ib->first || !same(ia->second, ib->second)) return false;
  return true;
}

[[noreturn]] void fail(const char* what, const std::string& written, const std::string& detail) {
  std::fprintf(stderr, "round trip: %s\n--- written ---\n%s\n--- detail ---\n%s\n", what, written.c_str(),
               detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  partune::JobConfig read;
  try {
    read = partune::JobConfig::from_toml_string(text, "fuzz.toml");
  } catch (const partune::InputError&) {
    return 0;  // not a job config: the reader said so
  }
  const std::string written = read.to_toml();
  partune::JobConfig back;
  try {
    back = partune::JobConfig::from_toml_string(written, "written.toml");
  } catch (const partune::InputError& e) {
    fail("the written config does not parse", written, e.what());
  }
  if (!same(read, back)) fail("the written config reads back to another table", written, back.to_toml());
  if (back.to_toml() != written) fail("writing twice gives another text", written, back.to_toml());
  return 0;
}
