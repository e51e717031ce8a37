// The lower Cholesky factor shared by the search's models (the throughput
// model's normal equations, the residual model's Gaussian process).
#pragma once
#include <vector>

namespace partune {

// Replaces `a` (symmetric) by its lower Cholesky factor, zeros above the
// diagonal; false when `a` is not (numerically) positive definite.
bool cholesky(std::vector<std::vector<double>>& a);

}  // namespace partune
