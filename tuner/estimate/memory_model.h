// The memory model: predicts, before launch, the per-rank peak memory a
// candidate reports on its step line (`memory:`, GiB reserved, the maximum
// over ranks), from the terms that drive it, and recalibrates on every
// measured trial. The pruner refuses to launch a candidate whose prediction,
// plus a margin for the model's current uncertainty, is over the headroom.
//
// Contract (shared by the planner, the study and its samplers):
//   - predict() is a pure function of the config and the observations so far;
//   - observe() adds one measured trial and refits the per-term scales;
//   - fits() and prune_reason() apply the headroom with the current margin.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/job_config.h"

namespace partune {

struct Space;
struct TrialMetrics;

// GiB per rank, for the rank with the largest total.
struct MemoryTerms {
  double params = 0;       // parameters as stored (fp32 master shards)
  double grads = 0;        // gradients
  double optimizer = 0;    // AdamW moments
  double activations = 0;  // saved for backward (AC mode, lbs, seq_len, TP/SP, EP)
  double logits = 0;       // output logits, loss and their gradient
  double transient = 0;    // gathered weights, communication buffers, workspace
  double overhead = 0;     // CUDA context, allocator fragmentation
  double total() const { return params + grads + optimizer + activations + logits + transient + overhead; }
};

struct MemoryPrediction {
  double memory_gib = 0;  // predicted peak reserved GiB
  double sigma_gib = 0;   // current 1-sigma uncertainty of memory_gib
  MemoryTerms terms;      // after calibration scales
  // False when the model cannot speak for this config: its flavor is not in
  // the table, or the calibrated fit misses the measurements by more than
  // kUnreliableResidual (the terms do not describe this backend). An
  // unknown prediction always fits and never prunes.
  bool known = true;
  // Whether a measured trial of this model has checked it in the config's
  // regime (memory_regime()). An unverified prediction prunes on its point
  // estimate alone: its margin is not applied until a trial of the regime
  // has measured how far the model is off there.
  bool verified = true;
  std::string regime;  // memory_regime() of the config; empty when unknown
};

// What the model's per-layer terms depend on beyond the batch: the depth,
// the memory mode and the TP / EP layout, e.g. "48 layers, compiled, TP 1,
// EP 4". Empty when the config's flavor is unknown.
std::string memory_regime(const JobConfig& config, int world_size);

// Relative RMS residual of the calibrated fit past which predictions are unknown.
inline constexpr double kUnreliableResidual = 0.30;

class MemoryModel {
 public:
  virtual ~MemoryModel() = default;
  virtual MemoryPrediction predict(const JobConfig& config) const = 0;
  // One measured trial: the peak memory its step lines reported.
  virtual void observe(const JobConfig& config, double measured_gib) = 0;
  virtual int64_t observations() const = 0;
};

// The model for a study's backend: built from what the embedded trainer
// allocates (both its memory modes, compile.enable false and true); for the
// torchtitan and command backends the same terms with scales fitted online.
// Throws InputError when the space's model is unknown to the flavor table
// and the backend is embedded.
std::unique_ptr<MemoryModel> make_memory_model(const Space& space);

// Device memory per rank in GiB: [hardware] memory_gib, else nullopt (known
// after the first measured trial: memory_gib / memory_pct).
std::optional<double> device_memory_gib(const Space& space);

// Device memory per rank learned from one measured trial: memory_gib /
// memory_pct * 100 (the step line prints both against the device's total).
// nullopt when either is missing or not positive.
std::optional<double> device_memory_from_trial(const TrialMetrics& metrics);

// Whether a prediction fits under headroom * capacity, with a margin of
// `sigmas` standard deviations when the prediction is verified (on its point
// estimate alone when it is not).
bool predicted_to_fit(const MemoryPrediction& p, double capacity_gib, double headroom, double sigmas = 2.0);

// "predicted 151.2 GiB > 90% of 139.8 GiB" (with the margin when it decided).
std::string prediction_prune_reason(const MemoryPrediction& p, double capacity_gib, double headroom,
                                    double sigmas = 2.0);

// Whether a prune reason is prediction_prune_reason's (the model's), not a
// measured trial's.
bool is_prediction_prune_reason(const std::string& reason);

// "151.2 GiB": memory as the prune reasons and the study's notes print it.
std::string gib_text(double gib);

}  // namespace partune
