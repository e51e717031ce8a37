// libFuzzer target: the search-space loader on arbitrary text. Bad input must
// end in InputError (exit 2 in tune), never a crash, hang or other exception.
// A `[base] config_file` is resolved against a folder that does not exist.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/error.h"
#include "tuner/space/space.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    partune::Space s = partune::load_space_from_string(text, "/nonexistent-partune-fuzz/space.toml");
    (void)s;
  } catch (const partune::InputError&) {
  }
  return 0;
}
