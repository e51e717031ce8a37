// The throughput model's second part: a Gaussian process on what the linear
// main-effects model leaves unexplained (its residuals), over standardised
// features of the config. It learns the interactions the main effects cannot
// hold (batch x AC x seq x layout, the fall near the memory limit) where
// measurements are near, and says nothing (mean 0, its prior spread) far
// from them.
//
// Its hyperparameters are picked from a small fixed grid by the
// leave-one-out error, which the GP gives in closed form
// (r_i = [K^-1 y]_i / [K^-1]_ii): the same leave-one-out residuals, of the
// whole model, are the error the sampler uses as the model's uncertainty.
// Hand-written (Cholesky of an n x n matrix, n the trials measured, at most
// a few hundred): no library needed for that, and the same numbers on every
// platform.
#pragma once
#include <cstddef>
#include <vector>

namespace partune {

class ResidualModel {
 public:
  // features: candidate -> standardised features (all the same length).
  explicit ResidualModel(std::vector<std::vector<double>> features) : z_(std::move(features)) {}

  // Fits on (candidate, residual) pairs; `loo_in`: each residual's own
  // leave-one-out inflation (1 / (1 - leverage) of the model it is the
  // residual of), so the leave-one-out error counts both models.
  void fit(const std::vector<size_t>& candidates, const std::vector<double>& residuals,
           const std::vector<double>& loo_in);

  struct Prediction {
    double mean = 0;
    double sd = 0;
  };
  Prediction predict(size_t i) const;
  // Root mean square of the leave-one-out residuals of the last fit (log
  // scale); nullopt-like: negative when fewer than kMinForError points.
  double loo_rms() const { return loo_rms_; }
  const std::vector<double>& loo_residuals() const { return loo_; }
  double length_scale() const { return length_; }
  static constexpr size_t kMinForError = 6;

 private:
  double kernel(size_t a, size_t b) const;

  std::vector<std::vector<double>> z_;
  std::vector<size_t> seen_;
  std::vector<double> alpha_;              // K^-1 r
  std::vector<std::vector<double>> chol_;  // of K (lower)
  double length_ = 1.0, signal_var_ = 0.0, noise_var_ = 1e-4;
  double loo_rms_ = -1;
  std::vector<double> loo_;
};

}  // namespace partune
