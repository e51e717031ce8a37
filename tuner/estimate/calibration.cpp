#include "tuner/estimate/calibration.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace partune {

namespace {

using Matrix = std::array<std::array<double, kMemoryTermCount>, kMemoryTermCount>;

// A scale with no prior spread is held at 1: a huge precision does that
// without a special case in the fit or the covariance.
double precision_of(double prior_sigma) { return prior_sigma > 0 ? 1.0 / (prior_sigma * prior_sigma) : 1e12; }

double dot(const TermVector& a, const TermVector& b) {
  double s = 0;
  for (int j = 0; j < kMemoryTermCount; ++j) s += a[j] * b[j];
  return s;
}

// Gauss-Jordan with partial pivoting; the matrix is symmetric positive
// definite (a prior precision on the diagonal), so it never meets a zero pivot.
Matrix inverse(Matrix a) {
  constexpr int n = kMemoryTermCount;
  Matrix inv{};
  for (int i = 0; i < n; ++i) inv[i][i] = 1;
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int r = col + 1; r < n; ++r)
      if (std::abs(a[r][col]) > std::abs(a[pivot][col])) pivot = r;
    std::swap(a[col], a[pivot]);
    std::swap(inv[col], inv[pivot]);
    const double p = a[col][col];
    for (int c = 0; c < n; ++c) {
      a[col][c] /= p;
      inv[col][c] /= p;
    }
    for (int r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = a[r][col];
      if (f == 0) continue;
      for (int c = 0; c < n; ++c) {
        a[r][c] -= f * a[col][c];
        inv[r][c] -= f * inv[col][c];
      }
    }
  }
  return inv;
}

}  // namespace

ScaleCalibration::ScaleCalibration(const CalibrationOptions& options) : options_(options), noise_(options.noise) {
  if (!(options.lower > 0 && options.lower <= 1 && options.upper >= 1) || !(options.noise > 0))
    throw std::invalid_argument("ScaleCalibration: bounds must bracket 1 and the noise be positive");
  scales_.fill(1.0);
  refit();
}

void ScaleCalibration::add(const TermVector& terms, double measured) {
  if (!(measured > 0)) throw std::invalid_argument("ScaleCalibration: a measured peak must be positive");
  rows_.push_back(terms);
  measured_.push_back(measured);
  refit();
}

void ScaleCalibration::refit() {
  constexpr int n = kMemoryTermCount;
  const size_t m = rows_.size();
  // Minimise sum_i ((y_i - s.t_i) / (y_i noise))^2 + sum_j penalty((s_j - 1) / prior_j)
  // over the box, penalty(z) = z^2 (Gaussian) or nu log(1 + z^2 / nu): cyclic
  // coordinate descent with clamping; convex for the Gaussian, and for the
  // heavy tail each sweep minimises a quadratic bound of the penalty at the
  // current scales (iteratively reweighted), so the objective never rises and
  // the same observations give the same scales.
  std::vector<double> weight(m);
  for (size_t i = 0; i < m; ++i) weight[i] = 1.0 / std::pow(measured_[i] * options_.noise, 2);
  std::vector<double> fitted(m);
  for (size_t i = 0; i < m; ++i) fitted[i] = dot(scales_, rows_[i]);
  // The prior's weight on scale j at its current value: constant for a
  // Gaussian prior; for a Student-t one, iteratively reweighted (each sweep
  // minimises a quadratic bound of the t prior at the current scales, so the
  // objective never rises), smaller the further the data have moved it.
  auto prior_weight = [&](int j) {
    const double precision = precision_of(options_.prior_sigma[j]);
    if (!(options_.prior_dof > 0)) return precision;
    const double z2 = std::pow(scales_[j] - 1.0, 2) * precision;
    return precision / (1.0 + z2 / options_.prior_dof);
  };
  for (int sweep = 0; sweep < 2000 && m > 0; ++sweep) {
    double moved = 0;
    for (int j = 0; j < n; ++j) {
      const double prior = prior_weight(j);
      double a = prior, b = prior;
      for (size_t i = 0; i < m; ++i) {
        const double t = rows_[i][j];
        const double rest = fitted[i] - scales_[j] * t;
        a += weight[i] * t * t;
        b += weight[i] * t * (measured_[i] - rest);
      }
      const double s = std::clamp(b / a, options_.lower, options_.upper);
      if (s != scales_[j]) {
        for (size_t i = 0; i < m; ++i) fitted[i] += (s - scales_[j]) * rows_[i][j];
        moved = std::max(moved, std::abs(s - scales_[j]));
        scales_[j] = s;
      }
    }
    if (moved < 1e-10) break;
  }

  double sum_sq = 0;
  for (size_t i = 0; i < m; ++i) sum_sq += std::pow((measured_[i] - fitted[i]) / measured_[i], 2);
  residual_rms_ = m > 0 ? std::sqrt(sum_sq / double(m)) : 0.0;
  noise_ = std::sqrt((options_.noise_weight * options_.noise * options_.noise + sum_sq) /
                     (options_.noise_weight + double(m)));

  // Posterior covariance of the scales (the bounds ignored): the prior's
  // precision (its Gaussian core, also for a Student-t prior: sigma does not
  // shrink below the prior's spread before any observation) plus what the
  // observations add at the pooled noise.
  Matrix h{};
  for (int j = 0; j < n; ++j) h[j][j] = precision_of(options_.prior_sigma[j]);
  for (size_t i = 0; i < m; ++i) {
    const double w = 1.0 / std::pow(measured_[i] * noise_, 2);
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < n; ++k) h[j][k] += w * rows_[i][j] * rows_[i][k];
  }
  covariance_ = inverse(h);
}

double ScaleCalibration::sigma(const TermVector& terms) const {
  constexpr int n = kMemoryTermCount;
  double var = 0;
  for (int j = 0; j < n; ++j)
    for (int k = 0; k < n; ++k) var += terms[j] * covariance_[j][k] * terms[k];
  const double predicted = dot(scales_, terms);
  return std::sqrt(std::max(0.0, var) + std::pow(noise_ * predicted, 2));
}

}  // namespace partune
