#include "tuner/search/residual_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tuner/search/cholesky.h"

namespace partune {

namespace {

using Matrix = std::vector<std::vector<double>>;

std::vector<double> forward(const Matrix& l, std::vector<double> b) {
  for (size_t i = 0; i < b.size(); ++i) {
    for (size_t k = 0; k < i; ++k) b[i] -= l[i][k] * b[k];
    b[i] /= l[i][i];
  }
  return b;
}

// Solves L^T x = y (backward).
std::vector<double> backward(const Matrix& l, std::vector<double> y) {
  for (size_t i = y.size(); i-- > 0;) {
    for (size_t k = i + 1; k < y.size(); ++k) y[i] -= l[k][i] * y[k];
    y[i] /= l[i][i];
  }
  return y;
}

// The diagonal of K^-1 from its Cholesky factor: column by column of L^-1,
// [K^-1]_ii = sum_k (L^-1)_ki^2.
std::vector<double> inverse_diagonal(const Matrix& l) {
  const size_t n = l.size();
  std::vector<double> diag(n, 0);
  for (size_t c = 0; c < n; ++c) {
    std::vector<double> col(n, 0);  // column c of L^-1: L col = e_c
    for (size_t i = c; i < n; ++i) {
      double s = i == c ? 1.0 : 0.0;
      for (size_t k = c; k < i; ++k) s -= l[i][k] * col[k];
      col[i] = s / l[i][i];
      diag[c] += col[i] * col[i];
    }
  }
  return diag;
}

}  // namespace

double ResidualModel::kernel(size_t a, size_t b) const {
  double d2 = 0;
  const auto& x = z_[a];
  const auto& y = z_[b];
  for (size_t k = 0; k < x.size(); ++k) d2 += (x[k] - y[k]) * (x[k] - y[k]);
  return signal_var_ * std::exp(-0.5 * d2 / (length_ * length_));
}

void ResidualModel::fit(const std::vector<size_t>& candidates, const std::vector<double>& residuals,
                        const std::vector<double>& loo_in) {
  seen_ = candidates;
  const size_t n = candidates.size();
  alpha_.clear();
  chol_.clear();
  loo_.clear();
  loo_rms_ = -1;
  signal_var_ = 0;
  if (n < 3) return;
  double var = 0;
  for (double r : residuals) var += r * r / static_cast<double>(n);
  // Pick the length scale (and the share of the residual variance that is
  // signal, not noise) by the leave-one-out error of the whole model.
  double best_err = std::numeric_limits<double>::infinity();
  struct Pick {
    double length, signal, noise;
  };
  Pick best{1.0, 0.0, 1e-4};
  for (double length : {0.5, 1.0, 2.0}) {
    for (double share : {0.0, 0.5, 0.9}) {
      const double signal = var * share;                         // 0: the main effects alone
      const double noise = std::max(var * (1 - share), 2.5e-5);  // at least 0.5% step-to-step noise
      length_ = length;
      signal_var_ = signal;
      Matrix k(n, std::vector<double>(n));
      for (size_t a = 0; a < n; ++a)
        for (size_t b = 0; b <= a; ++b) k[a][b] = k[b][a] = kernel(candidates[a], candidates[b]) + (a == b ? noise : 0);
      if (!cholesky(k)) continue;
      const std::vector<double> alpha = backward(k, forward(k, residuals));
      const std::vector<double> diag = inverse_diagonal(k);
      double err = 0;
      for (size_t i = 0; i < n; ++i) {
        const double loo = alpha[i] / diag[i] * loo_in[i];
        err += loo * loo;
      }
      if (err < best_err) {
        best_err = err;
        best = {length, signal, noise};
      }
    }
  }
  length_ = best.length;
  signal_var_ = best.signal;
  noise_var_ = best.noise;
  chol_.assign(n, std::vector<double>(n));
  for (size_t a = 0; a < n; ++a)
    for (size_t b = 0; b <= a; ++b)
      chol_[a][b] = chol_[b][a] = kernel(candidates[a], candidates[b]) + (a == b ? noise_var_ : 0);
  if (!cholesky(chol_)) {  // cannot happen after the search above found it positive definite; be safe
    chol_.clear();
    signal_var_ = 0;
    return;
  }
  alpha_ = backward(chol_, forward(chol_, residuals));
  const std::vector<double> diag = inverse_diagonal(chol_);
  double ss = 0;
  for (size_t i = 0; i < n; ++i) {
    loo_.push_back(alpha_[i] / diag[i] * loo_in[i]);
    ss += loo_.back() * loo_.back();
  }
  if (n >= kMinForError) loo_rms_ = std::sqrt(ss / static_cast<double>(n));
}

ResidualModel::Prediction ResidualModel::predict(size_t i) const {
  Prediction p;
  if (chol_.empty()) return p;
  std::vector<double> k(seen_.size());
  for (size_t a = 0; a < seen_.size(); ++a) k[a] = kernel(i, seen_[a]);
  for (size_t a = 0; a < k.size(); ++a) p.mean += k[a] * alpha_[a];
  const std::vector<double> v = forward(chol_, k);
  double vv = 0;
  for (double x : v) vv += x * x;
  p.sd = std::sqrt(std::max(0.0, signal_var_ - vv));
  return p;
}

}  // namespace partune
