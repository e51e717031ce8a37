// The message of the InputError a piece of code throws, for tests of bad input.
#pragma once
#include <functional>
#include <string>

#include "common/error.h"

namespace partune::testing {

// What `f` throws as an InputError; "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace partune::testing
