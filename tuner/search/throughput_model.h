// The guided sampler's throughput model: Bayesian linear regression (ridge
// with a Gaussian prior) of log(objective) on features of the config, which
// gives a predictive mean and standard deviation for every candidate in
// closed form. docs/search-space.md says why this model.
//
// Features, built from the candidates' canonical axis values (so neither the
// order of axes nor the order of values in the file changes anything):
//   - one indicator per (axis, value): main effects of every choice;
//   - one indicator per layout (the axis values other than batch, sequence
//     and activation checkpointing): how the parallel degrees interact;
//   - for numeric axes, log(value) and its square, standardised: smooth
//     trends such as a larger batch filling the device better;
//   - log(tokens per rank) = log(lbs * seq_len) and its square when both are
//     axes: the saturation of the GEMMs with work per step.
// On top, a Gaussian process on the linear model's residuals
// (residual_model.h) over the standardised log of every numeric axis, the
// tokens per step, and an indicator per value of the other axes: the
// interactions. The leave-one-out error of the two together is measured at
// every fit (measured_error) and is the sampler's yardstick of how far to
// trust the model.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "tuner/search/residual_model.h"
#include "tuner/trial/trial.h"

namespace partune {

// The non-memory axis values of a candidate, "key=value;..." in key order:
// configs with the same layout differ only in batch, sequence and AC.
std::string layout_key(const Candidate& c);
// The fraction of the forward pass activation checkpointing re-runs: 0 for
// none, 1 for full, 1/N for selective every Nth block, 0.5 for per-op.
double recompute_fraction(const JobConfig& config);
// Whether an axis is one of the memory axes left out of the layout.
bool is_memory_axis(const std::string& key);

class ThroughputModel {
 public:
  explicit ThroughputModel(const std::vector<Candidate>& candidates);

  // Refits on (candidate index, log objective) pairs. With no observation
  // every prediction is the prior's.
  void fit(const std::vector<std::pair<size_t, double>>& observations);

  struct Prediction {
    double mean = 0;    // of log(objective)
    double sd = 0;      // of the mean (model uncertainty, without step noise)
    double linear = 0;  // the main-effects part of the mean
  };
  Prediction predict(size_t i) const;
  double noise_sd() const { return noise_sd_; }  // residual sd, log scale
  size_t features() const { return prior_var_.size(); }
  // Root mean square of the leave-one-out residuals of the last fit (log
  // scale): the model's measured predictive error; negative while fewer
  // than ResidualModel::kMinForError results are known.
  double measured_error() const { return residual_.loo_rms(); }
  const ResidualModel& residual() const { return residual_; }

 private:
  std::vector<std::vector<double>> x_;  // candidate -> features
  std::vector<double> offset_;          // candidate -> known log factor (AC recompute), not fitted
  std::vector<double> prior_var_;       // per feature
  std::vector<double> weights_;
  std::vector<std::vector<double>> cov_;  // posterior covariance of the weights
  double y_mean_ = 0;
  double noise_sd_ = 0.05;
  bool fitted_ = false;
  ResidualModel residual_;
  Prediction linear_predict(size_t i) const;
};

}  // namespace partune
