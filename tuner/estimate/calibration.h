// Per-term scales of the memory model fitted to measured trials: bounded,
// regularised least squares on relative errors, with a prior that pulls
// every scale to 1 (few observations cannot run away; heavy-tailed with
// prior_dof, so that consistent ones can move a scale far) and a 1-sigma
// prediction uncertainty that shrinks as observations accumulate and grows
// with the fit's residuals. docs/memory-model.md explains the choices.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace partune {

// The calibrated terms: MemoryTerms' fields with activations and logits
// split by memory mode (eager, compile.enable), each with its own scale.
inline constexpr int kMemoryTermCount = 9;
using TermVector = std::array<double, kMemoryTermCount>;

struct CalibrationOptions {
  TermVector prior_sigma{};  // prior standard deviation of each scale around 1
  double lower = 0.5;        // bounds of every scale
  double upper = 2.0;
  double noise = 0.03;        // assumed relative measurement / model noise before any residual is seen
  double noise_weight = 2.0;  // pseudo-observations behind `noise` when the residuals are pooled with it
  // Degrees of freedom of the prior on each scale: 0, a Gaussian around 1
  // with sd prior_sigma; nu > 0, a heavy-tailed Student-t-like prior whose
  // penalty is nu log(1 + z^2 / nu) (z = (s - 1) / prior_sigma): the
  // Gaussian's near 1, growing only logarithmically far from it, so that
  // measurements that agree with each other overrule it (a term wrong by
  // 1.7x: its slope is corrected, not only the total's scale) where a
  // Gaussian prior would keep the scale half-way.
  double prior_dof = 0;
};

class ScaleCalibration {
 public:
  explicit ScaleCalibration(const CalibrationOptions& options);

  // One measured trial: its uncalibrated terms (GiB) and measured peak (GiB > 0).
  void add(const TermVector& terms, double measured);
  int64_t observations() const { return static_cast<int64_t>(rows_.size()); }

  const TermVector& scales() const { return scales_; }
  // Current relative noise: the prior's, pooled with the fit's relative residuals.
  double relative_noise() const { return noise_; }
  // RMS of the fit's relative residuals (0 without observations).
  double residual_rms() const { return residual_rms_; }
  // 1-sigma uncertainty (GiB) of scales() . terms: the scales' posterior
  // spread along `terms` plus the relative noise.
  double sigma(const TermVector& terms) const;

 private:
  void refit();

  CalibrationOptions options_;
  std::vector<TermVector> rows_;
  std::vector<double> measured_;
  TermVector scales_;
  double noise_;
  double residual_rms_ = 0;
  std::array<std::array<double, kMemoryTermCount>, kMemoryTermCount> covariance_{};
};

}  // namespace partune
