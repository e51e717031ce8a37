// Errors that partune reports to a user, with the exit codes the CLIs use.
#pragma once
#include <stdexcept>
#include <string>

namespace partune {

// Bad input from a user: a file, key, value or flag. The message already names
// where ("file:line: key: reason"). CLIs print it and exit with kExitBadInput.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // the work ran and failed (a trial, a rank)
inline constexpr int kExitBadInput = 2;  // nothing was run: fix the input

}  // namespace partune
