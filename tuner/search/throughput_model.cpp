#include "tuner/search/throughput_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <variant>

#include "common/ac_policy.h"
#include "common/job_keys.h"
#include "tuner/search/cholesky.h"

namespace partune {

namespace {

using keys::kLbs;
constexpr const char* kSeq = keys::kSeqLen;

std::optional<double> numeric(const Value& v) {
  if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

// The inverse of L L^T from its lower Cholesky factor L.
std::vector<std::vector<double>> inverse_from_cholesky(const std::vector<std::vector<double>>& l) {
  const size_t n = l.size();
  std::vector<std::vector<double>> inv(n, std::vector<double>(n, 0));
  for (size_t c = 0; c < n; ++c) {
    std::vector<double> y(n, 0);  // L y = e_c
    for (size_t i = 0; i < n; ++i) {
      double s = i == c ? 1.0 : 0.0;
      for (size_t k = 0; k < i; ++k) s -= l[i][k] * y[k];
      y[i] = s / l[i][i];
    }
    for (size_t i = n; i-- > 0;) {  // L^T x = y
      double s = y[i];
      for (size_t k = i + 1; k < n; ++k) s -= l[k][i] * inv[k][c];
      inv[i][c] = s / l[i][i];
    }
  }
  return inv;
}

}  // namespace

double recompute_fraction(const JobConfig& config) {
  const std::optional<AcPolicy> p = ac_policy_of(config);
  if (!p) return 0.5;  // unreadable: halfway, the model learns the rest
  switch (p->mode) {
    case AcPolicyMode::Full:
      return 1.0;
    case AcPolicyMode::None:
      return 0.0;
    case AcPolicyMode::MemoryBudget:
      return 0.5;
    case AcPolicyMode::Selective:
      break;
  }
  if (p->per_op) return 0.5;  // torchtitan's policy re-runs every other matmul and the elementwise ops
  return p->every_n == 0 ? 1.0 : 1.0 / static_cast<double>(p->every_n);  // every Nth block (0: all)
}

bool is_memory_axis(const std::string& key) {
  return key == kLbs || key == kSeq || key == keys::kGbs || key.rfind("activation_checkpoint.", 0) == 0;
}

std::string layout_key(const Candidate& c) {
  std::string out;
  for (const auto& [k, v] : c.axes)
    if (!is_memory_axis(k)) out += k + "=" + value_to_string(v) + ";";
  return out;
}

namespace {

// The residual model's features: the standardised log of every numeric axis
// (and of tokens per step), 0.7 per indicator of every other axis's value
// (two values apart: distance 1).
std::vector<std::vector<double>> residual_features(const std::vector<Candidate>& candidates) {
  std::set<std::string> numeric_axes, other_axes;
  for (const auto& c : candidates)
    for (const auto& [k, v] : c.axes) (numeric(v) && *numeric(v) > 0 ? numeric_axes : other_axes).insert(k);
  for (const auto& k : other_axes) numeric_axes.erase(k);  // mixed or non-positive: indicators
  std::map<std::string, size_t> indicator;
  for (const auto& c : candidates)
    for (const auto& [k, v] : c.axes)
      if (!numeric_axes.count(k)) indicator.emplace(k + "=" + value_to_string(v), 0);
  size_t next = numeric_axes.size() + 1;
  for (auto& [name, column] : indicator) column = next++;
  const bool tokens = numeric_axes.count(kLbs) && numeric_axes.count(kSeq);
  std::vector<std::vector<double>> z(candidates.size(), std::vector<double>(next, 0.0));
  for (size_t i = 0; i < candidates.size(); ++i) {
    size_t j = 0;
    for (const auto& k : numeric_axes) z[i][j++] = std::log(*numeric(candidates[i].axes.at(k)));
    if (tokens) z[i][j] = std::log(*numeric(candidates[i].axes.at(kLbs)) * *numeric(candidates[i].axes.at(kSeq)));
    for (const auto& [k, v] : candidates[i].axes)
      if (!numeric_axes.count(k)) z[i][indicator.at(k + "=" + value_to_string(v))] = 0.7;
  }
  const double n = static_cast<double>(std::max<size_t>(1, candidates.size()));
  for (size_t j = 0; j <= numeric_axes.size(); ++j) {
    double mean = 0, var = 0;
    for (const auto& row : z) mean += row[j] / n;
    for (const auto& row : z) var += (row[j] - mean) * (row[j] - mean) / n;
    const double sd = std::sqrt(var);
    for (auto& row : z) row[j] = sd > 0 ? (row[j] - mean) / sd : 0.0;
  }
  return z;
}

}  // namespace

ThroughputModel::ThroughputModel(const std::vector<Candidate>& candidates) : residual_(residual_features(candidates)) {
  // Columns by name, in name order: independent of file order.
  std::map<std::string, double> indicator_prior;  // column -> prior variance
  std::set<std::string> numeric_axes;
  for (const auto& c : candidates) {
    for (const auto& [k, v] : c.axes) {
      indicator_prior["v:" + k + "=" + value_to_string(v)] = 0.25;
      if (numeric(v) && *numeric(v) > 0) numeric_axes.insert(k);
    }
    indicator_prior["l:" + layout_key(c)] = 0.09;
  }
  // A numeric axis with a non-positive value somewhere keeps indicators only.
  for (const auto& c : candidates)
    for (const auto& [k, v] : c.axes)
      if (numeric_axes.count(k) && (!numeric(v) || *numeric(v) <= 0)) numeric_axes.erase(k);

  std::vector<std::string> columns;
  for (const auto& [name, var] : indicator_prior) {
    columns.push_back(name);
    prior_var_.push_back(var);
  }
  std::map<std::string, size_t> column_of;
  for (size_t j = 0; j < columns.size(); ++j) column_of[columns[j]] = j;

  // Smooth terms: raw values first, standardised below.
  std::vector<std::vector<double>> smooth(candidates.size());
  size_t n_smooth = 0;
  const bool tokens = numeric_axes.count(kLbs) && numeric_axes.count(kSeq);
  for (size_t i = 0; i < candidates.size(); ++i) {
    const auto& c = candidates[i];
    for (const auto& k : numeric_axes) {
      const double l = std::log(*numeric(c.axes.at(k)));
      smooth[i].push_back(l);
      smooth[i].push_back(l * l);
    }
    if (tokens) {
      const double l = std::log(*numeric(c.axes.at(kLbs)) * *numeric(c.axes.at(kSeq)));
      smooth[i].push_back(l);
      smooth[i].push_back(l * l);
    }
    n_smooth = smooth[i].size();
  }
  std::vector<double> mean(n_smooth, 0), sd(n_smooth, 0);
  for (const auto& s : smooth)
    for (size_t j = 0; j < n_smooth; ++j) mean[j] += s[j] / static_cast<double>(candidates.size());
  for (const auto& s : smooth)
    for (size_t j = 0; j < n_smooth; ++j) sd[j] += (s[j] - mean[j]) * (s[j] - mean[j]);
  for (size_t j = 0; j < n_smooth; ++j) {
    sd[j] = std::sqrt(sd[j] / static_cast<double>(std::max<size_t>(1, candidates.size())));
    prior_var_.push_back(sd[j] > 0 ? 0.04 : 0.0);  // 0: a constant column, no effect
  }

  // A known part of the answer, not learned: activation checkpointing re-runs
  // a fraction r of the forward, which MFU and tps pay for (forward +
  // backward = 3 forward passes, so throughput scales by 3 / (3 + r)). The
  // regression learns the rest; without this, a mode seen only at small
  // batches (the probes) takes the blame for their low throughput.
  offset_.clear();
  for (const auto& c : candidates) offset_.push_back(std::log(3.0 / (3.0 + recompute_fraction(c.config))));

  x_.assign(candidates.size(), std::vector<double>(prior_var_.size(), 0.0));
  for (size_t i = 0; i < candidates.size(); ++i) {
    const auto& c = candidates[i];
    for (const auto& [k, v] : c.axes) x_[i][column_of.at("v:" + k + "=" + value_to_string(v))] = 1.0;
    x_[i][column_of.at("l:" + layout_key(c))] = 1.0;
    for (size_t j = 0; j < n_smooth; ++j)
      x_[i][columns.size() + j] = sd[j] > 0 ? (smooth[i][j] - mean[j]) / sd[j] : 0.0;
  }
  fit({});
}

void ThroughputModel::fit(const std::vector<std::pair<size_t, double>>& observations) {
  const size_t d = prior_var_.size();
  fitted_ = !observations.empty();
  y_mean_ = 0;
  for (const auto& [i, y] : observations) y_mean_ += (y - offset_[i]) / static_cast<double>(observations.size());

  // Two passes: the second with the noise level the first one's residuals show.
  for (int pass = 0; pass < 2; ++pass) {
    const double noise_var = noise_sd_ * noise_sd_;
    std::vector<std::vector<double>> a(d, std::vector<double>(d, 0.0));
    std::vector<double> b(d, 0.0);
    for (size_t j = 0; j < d; ++j) a[j][j] = prior_var_[j] > 0 ? 1.0 / prior_var_[j] : 1e9;
    for (const auto& [i, y] : observations) {
      const auto& x = x_[i];
      for (size_t j = 0; j < d; ++j) {
        if (x[j] == 0) continue;
        b[j] += x[j] * (y - offset_[i] - y_mean_) / noise_var;
        for (size_t k = 0; k < d; ++k) a[j][k] += x[j] * x[k] / noise_var;
      }
    }
    if (!cholesky(a)) throw std::runtime_error("throughput model: matrix not positive definite");
    cov_ = inverse_from_cholesky(a);
    weights_.assign(d, 0.0);
    for (size_t j = 0; j < d; ++j)
      for (size_t k = 0; k < d; ++k) weights_[j] += cov_[j][k] * b[k];
    if (observations.size() < 4) break;
    double rss = 0;
    for (const auto& [i, y] : observations) {
      const double r = y - linear_predict(i).mean;
      rss += r * r;
    }
    // Residuals of a fit shrink toward zero; 1.5x is a rough allowance for
    // the degrees of freedom the fit used.
    noise_sd_ = std::clamp(1.5 * std::sqrt(rss / static_cast<double>(observations.size())), 0.01, 0.3);
  }
  // The residual model on what the main effects leave, each residual's
  // leave-one-out inflation from the linear fit's leverage.
  std::vector<size_t> seen;
  std::vector<double> residuals, inflation;
  for (const auto& [i, y] : observations) {
    const Prediction p = linear_predict(i);
    seen.push_back(i);
    residuals.push_back(y - p.mean);
    const double leverage = std::min(0.9, p.sd * p.sd / (noise_sd_ * noise_sd_));
    inflation.push_back(1.0 / (1.0 - leverage));
  }
  residual_.fit(seen, residuals, inflation);
}

ThroughputModel::Prediction ThroughputModel::predict(size_t i) const {
  Prediction p = linear_predict(i);
  const ResidualModel::Prediction r = residual_.predict(i);
  p.mean += r.mean;
  p.sd = std::hypot(p.sd, r.sd);
  return p;
}

ThroughputModel::Prediction ThroughputModel::linear_predict(size_t i) const {
  const auto& x = x_[i];
  const size_t d = x.size();
  Prediction p;
  p.mean = y_mean_ + offset_[i];
  for (size_t j = 0; j < d; ++j) p.mean += weights_[j] * x[j];
  double var = 0;
  for (size_t j = 0; j < d; ++j) {
    if (x[j] == 0) continue;
    for (size_t k = 0; k < d; ++k) var += x[j] * cov_[j][k] * x[k];
  }
  p.sd = std::sqrt(std::max(0.0, var));
  p.linear = p.mean;
  return p;
}

}  // namespace partune
