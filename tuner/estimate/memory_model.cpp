#include "tuner/estimate/memory_model.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "common/error.h"
#include "tuner/estimate/calibration.h"
#include "tuner/estimate/memory_terms.h"
#include "tuner/space/space.h"
#include "tuner/trial/trial.h"

namespace partune {

namespace {

std::string regime_of(const MemoryShape& s) {
  return std::to_string(s.flavor.n_layers) + " layers, " + (s.compile ? "compiled" : "eager") + ", TP " +
         std::to_string(s.dims.tp) + ", EP " + std::to_string(s.dims.ep);
}

// Calibrated terms, in TermVector order.
enum Term {
  kParams,
  kGrads,
  kOptimizer,
  kActsEager,
  kActsCompiled,
  kLogitsEager,
  kLogitsCompiled,
  kTransient,
  kOverhead
};

TermVector to_vector(const MemoryTerms& t, bool compiled) {
  TermVector v{};
  v[kParams] = t.params;
  v[kGrads] = t.grads;
  v[kOptimizer] = t.optimizer;
  v[compiled ? kActsCompiled : kActsEager] = t.activations;
  v[compiled ? kLogitsCompiled : kLogitsEager] = t.logits;
  v[kTransient] = t.transient;
  v[kOverhead] = t.overhead;
  return v;
}

MemoryTerms scaled(const MemoryTerms& t, const TermVector& s, bool compiled) {
  MemoryTerms out;
  out.params = t.params * s[kParams];
  out.grads = t.grads * s[kGrads];
  out.optimizer = t.optimizer * s[kOptimizer];
  out.activations = t.activations * s[compiled ? kActsCompiled : kActsEager];
  out.logits = t.logits * s[compiled ? kLogitsCompiled : kLogitsEager];
  out.transient = t.transient * s[kTransient];
  out.overhead = t.overhead * s[kOverhead];
  return out;
}

// Embedded: the terms count what our trainer allocates, so the state terms
// are nearly exact and the dynamic ones carry the model's error. Other
// backends run other code with the same structure: wider priors and bounds.
CalibrationOptions options_for(const std::string& backend) {
  CalibrationOptions o;
  if (backend == "embedded") {
    o.prior_sigma = {0.03, 0.03, 0.03, 0.12, 0.15, 0.08, 0.15, 0.2, 0.5};
    o.lower = 0.5;
    o.upper = 2.0;
    // Tight priors with a heavy (Cauchy) tail: near 1 they pull as the
    // Gaussian with the same sigma does; a term that consistent measurements
    // show to be far off (its slope: activations 1.7x too large) is let go.
    o.prior_dof = 1;
  } else {
    // Wide Gaussian priors: these backends' scales are mostly learned
    // online anyway, and a heavy tail would let terms that do not describe
    // the backend (kUnreliableResidual) be fitted to anything within the
    // bounds and prune on it.
    o.prior_dof = 0;
    o.prior_sigma = {0.15, 0.15, 0.15, 0.3, 0.3, 0.3, 0.3, 0.4, 0.6};
    o.lower = 0.25;
    o.upper = 4.0;
  }
  o.noise = 0.03;
  return o;
}

class TermMemoryModel : public MemoryModel {
 public:
  TermMemoryModel(int world_size, bool cuda, const std::string& backend)
      : world_size_(world_size),
        cuda_(cuda),
        torchtitan_(backend == "torchtitan"),
        calibration_(options_for(backend)) {}

  MemoryPrediction predict(const JobConfig& config) const override {
    MemoryPrediction p;
    const auto shape = shape_of(config);
    if (!shape) {
      p.known = false;
      return p;
    }
    const MemoryTerms base = embedded_memory_terms(*shape);
    p.terms = scaled(base, calibration_.scales(), shape->compile);
    p.memory_gib = p.terms.total();
    p.sigma_gib = calibration_.sigma(to_vector(base, shape->compile));
    p.known = calibration_.observations() < 2 || calibration_.residual_rms() <= kUnreliableResidual;
    p.regime = regime_of(*shape);
    p.verified = regimes_.count(p.regime) > 0;
    return p;
  }

  void observe(const JobConfig& config, double measured_gib) override {
    ++observed_;
    const auto shape = shape_of(config);
    if (!shape || !(measured_gib > 0)) return;  // nothing to fit: the config's shapes are unknown
    calibration_.add(to_vector(embedded_memory_terms(*shape), shape->compile), measured_gib);
    regimes_.insert(regime_of(*shape));
  }

  int64_t observations() const override { return observed_; }

 private:
  std::optional<MemoryShape> shape_of(const JobConfig& config) const {
    auto shape = memory_shape(config, world_size_, cuda_);
    if (!shape || shape->dims.tp == 1) return shape;
    // torchtitan shards the embeddings and the output over TP, and the logits
    // too unless told not to; the embedded trainer shards the output and its
    // logits in the compiled memory mode when TP divides the vocabulary
    // (apply_loss_parallel), and replicates the embeddings.
    const bool wanted = !config.get_bool("parallelism.disable_loss_parallel");
    if (torchtitan_) {
      shape->loss_parallel = wanted;
      shape->embeddings_over_tp = true;
    } else {
      const Flavor& f = shape->flavor;
      shape->loss_parallel = wanted && shape->compile && !f.tie_embeddings && f.vocab_size % shape->dims.tp == 0;
    }
    return shape;
  }

  int world_size_;
  bool cuda_;
  bool torchtitan_;
  ScaleCalibration calibration_;
  int64_t observed_ = 0;
  std::set<std::string> regimes_;  // memory_regime() of every measured trial
};

void check_flavor(const Space& space, const std::string& model, const std::string& flavor, const std::string& where) {
  if (find_flavor(model, flavor)) return;
  throw InputError(space.path + ": " + where + " '" + flavor + "' of model '" + model +
                   "' is not in the flavor table: the embedded backend's memory model needs its shapes");
}

std::string number(double v, const char* format) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

std::unique_ptr<MemoryModel> make_memory_model(const Space& space) {
  if (space.backend.kind == "embedded") {
    const std::string model = space.base.get_string("model.name");
    bool flavor_axis = false;
    for (const auto& axis : space.axes) {
      if (axis.key != "model.flavor") continue;
      flavor_axis = true;
      for (const auto& v : axis.values)
        if (const auto* s = std::get_if<std::string>(&v)) check_flavor(space, model, *s, "axis model.flavor value");
    }
    if (!flavor_axis) check_flavor(space, model, space.base.get_string("model.flavor"), "model.flavor");
  }
  return std::make_unique<TermMemoryModel>(space.hardware.world_size(), space.hardware.device_type == "cuda",
                                           space.backend.kind);
}

std::optional<double> device_memory_gib(const Space& space) { return space.hardware.memory_gib; }

std::optional<double> device_memory_from_trial(const TrialMetrics& m) {
  if (!m.memory_gib || !m.memory_pct || !(*m.memory_gib > 0) || !(*m.memory_pct > 0)) return std::nullopt;
  return *m.memory_gib / *m.memory_pct * 100.0;
}

std::string memory_regime(const JobConfig& config, int world_size) {
  const auto shape = memory_shape(config, world_size, true);
  return shape ? regime_of(*shape) : "";
}

bool predicted_to_fit(const MemoryPrediction& p, double capacity_gib, double headroom, double sigmas) {
  if (!p.known) return true;
  return p.memory_gib + (p.verified ? sigmas : 0.0) * p.sigma_gib <= headroom * capacity_gib;
}

std::string prediction_prune_reason(const MemoryPrediction& p, double capacity_gib, double headroom, double sigmas) {
  if (predicted_to_fit(p, capacity_gib, headroom, sigmas)) return "";
  const std::string limit = number(headroom * 100.0, "%.4g") + "% of " + gib_text(capacity_gib);
  const std::string predicted = "predicted " + gib_text(p.memory_gib);
  if (!p.verified)
    return predicted + " > " + limit + " (unverified: no trial of this study has run at " + p.regime + " yet)";
  if (p.memory_gib > headroom * capacity_gib) return predicted + " > " + limit;
  return predicted + " + " + number(sigmas, "%.3g") + " x " + gib_text(p.sigma_gib) + " margin > " + limit;
}

bool is_prediction_prune_reason(const std::string& reason) { return reason.rfind("predicted", 0) == 0; }

std::string gib_text(double gib) { return number(gib, "%.1f") + " GiB"; }

}  // namespace partune
