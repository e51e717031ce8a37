// The per-term scale fit: bounded, pulled to 1 by its prior, honest sigma.
#include "tuner/estimate/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

namespace partune {
namespace {

CalibrationOptions options() {
  CalibrationOptions o;
  o.prior_sigma = {0.03, 0.03, 0.03, 0.15, 0.15, 0.1, 0.15, 0.2, 0.5};
  return o;
}

double dot(const TermVector& s, const TermVector& t) {
  double v = 0;
  for (int j = 0; j < kMemoryTermCount; ++j) v += s[j] * t[j];
  return v;
}

// Term vectors of varied shape: state fixed, activations and logits varied.
TermVector row(double acts, double logits) { return {10, 0, 20, acts, 0, logits, 0, 2, 1}; }

TEST(Calibration, WithoutObservationsTheScalesAreOneAndSigmaIsThePrior) {
  ScaleCalibration c(options());
  for (double s : c.scales()) EXPECT_EQ(s, 1.0);
  const TermVector t = row(8, 30);
  const auto p = options().prior_sigma;
  double var = std::pow(0.03 * dot(c.scales(), t), 2);
  for (int j = 0; j < kMemoryTermCount; ++j) var += std::pow(p[j] * t[j], 2);
  EXPECT_NEAR(c.sigma(t), std::sqrt(var), 1e-9);
}

TEST(Calibration, RecoversScalesThatTheObservationsDetermine) {
  ScaleCalibration c(options());
  TermVector truth;
  truth.fill(1.0);
  truth[3] = 1.25;  // activations
  truth[5] = 0.9;   // logits
  const double shapes[][2] = {{4, 10}, {16, 10}, {4, 40}, {8, 20}, {12, 35}, {2, 5}};
  for (const auto& s : shapes) c.add(row(s[0], s[1]), dot(truth, row(s[0], s[1])));
  // The prior keeps some pull, and constant terms can absorb part of a
  // change: the scales move the right way, the predictions land.
  EXPECT_GT(c.scales()[3], 1.08);
  EXPECT_LT(c.scales()[5], 0.97);
  const TermVector unseen = row(20, 50);
  EXPECT_NEAR(dot(c.scales(), unseen) / dot(truth, unseen), 1.0, 0.01);
}

// A term far off (activations 1.7x too large) seen by consistent
// observations: the Gaussian prior keeps its scale half-way, the heavy tail
// (prior_dof 1, the memory model's) lets the data move it; near 1 both pull
// the same.
TEST(Calibration, AHeavyTailedPriorLetsConsistentObservationsMoveAScaleFar) {
  TermVector truth;
  truth.fill(1.0);
  truth[3] = 1.0 / 1.7;
  CalibrationOptions gaussian = options(), heavy = options();
  heavy.prior_dof = 1;
  ScaleCalibration g(gaussian), h(heavy);
  for (const auto& s : {std::pair{10.0, 5.0}, std::pair{20.0, 5.0}}) {
    g.add(row(s.first, s.second), dot(truth, row(s.first, s.second)));
    h.add(row(s.first, s.second), dot(truth, row(s.first, s.second)));
  }
  std::printf("activation scale: Gaussian %.3f, heavy-tailed %.3f\n", g.scales()[3], h.scales()[3]);
  EXPECT_GT(g.scales()[3], 0.68);  // the Gaussian: far from 0.59
  EXPECT_NEAR(h.scales()[3], truth[3], 0.05);
  const TermVector unseen = row(60, 5);
  EXPECT_NEAR(dot(h.scales(), unseen) / dot(truth, unseen), 1.0, 0.02);
  EXPECT_GT(dot(g.scales(), unseen) / dot(truth, unseen), 1.05);

  // Without observations the two agree (sigma is the prior's), and a small
  // correction comes out about the same.
  ScaleCalibration g0(gaussian), h0(heavy);
  EXPECT_DOUBLE_EQ(g0.sigma(row(8, 30)), h0.sigma(row(8, 30)));
  g0.add(row(8, 30), 1.03 * dot(g0.scales(), row(8, 30)));
  h0.add(row(8, 30), 1.03 * dot(h0.scales(), row(8, 30)));
  for (int j = 0; j < kMemoryTermCount; ++j) EXPECT_NEAR(h0.scales()[j], g0.scales()[j], 0.01) << j;
}

TEST(Calibration, ScalesStayInsideTheirBounds) {
  ScaleCalibration c(options());
  for (int i = 0; i < 5; ++i) c.add(row(8, 30), 10 * dot(c.scales(), row(8, 30)));
  for (double s : c.scales()) {
    EXPECT_GE(s, 0.5);
    EXPECT_LE(s, 2.0);
  }
  EXPECT_EQ(c.scales()[5], 2.0);  // the loosest large term went as far as it may
}

TEST(Calibration, OneObservationMovesThePredictionPartWayTowardIt) {
  ScaleCalibration c(options());
  const TermVector t = row(8, 30);
  const double before = dot(c.scales(), t), measured = 1.2 * before;
  c.add(t, measured);
  const double after = dot(c.scales(), t);
  EXPECT_GT(after, before);
  EXPECT_LE(after, measured);
  EXPECT_GT(after, before + 0.5 * (measured - before));  // the data outweigh a loose prior
}

TEST(Calibration, SigmaShrinksWithAgreeingObservationsAndGrowsWithResiduals) {
  ScaleCalibration agree(options());
  const TermVector t = row(8, 30);
  const double sigma0 = agree.sigma(t);
  for (int i = 0; i < 6; ++i) agree.add(row(4 + i, 20 + 3 * i), dot(agree.scales(), row(4 + i, 20 + 3 * i)));
  EXPECT_LT(agree.sigma(t), 0.7 * sigma0);

  ScaleCalibration disagree(options());
  for (int i = 0; i < 6; ++i) disagree.add(t, i % 2 ? 55.0 : 85.0);  // one config, measured 70 +- 15
  EXPECT_GT(disagree.relative_noise(), 0.1);
  EXPECT_GT(disagree.residual_rms(), 0.15);
  EXPECT_GT(disagree.sigma(t), agree.sigma(t));
}

TEST(Calibration, RejectsAMeasurementThatIsNotPositive) {
  ScaleCalibration c(options());
  EXPECT_THROW(c.add(row(1, 1), 0.0), std::invalid_argument);
  EXPECT_EQ(c.observations(), 0);
}

}  // namespace
}  // namespace partune
