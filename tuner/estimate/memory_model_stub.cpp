// TEMPORARY STUB — delete this file when the memory model (branch "mem") is
// merged; it only lets the search branch build and run on its own.
// It predicts nothing (0 GiB, no uncertainty), so every candidate "fits"
// and no candidate is pruned before launch: the behaviour of tune before the
// memory model. The tests and the simulation use their own MemoryModel.
#include <cstdio>

#include "tuner/estimate/memory_model.h"
#include "tuner/space/space.h"

namespace partune {

namespace {
class NoMemoryModel : public MemoryModel {
 public:
  MemoryPrediction predict(const JobConfig& /*config*/) const override { return {}; }
  void observe(const JobConfig& /*config*/, double /*measured_gib*/) override { ++n_; }
  int64_t observations() const override { return n_; }

 private:
  int64_t n_ = 0;
};
}  // namespace

std::unique_ptr<MemoryModel> make_memory_model(const Space& /*space*/) { return std::make_unique<NoMemoryModel>(); }

std::optional<double> device_memory_gib(const Space& space) { return space.hardware.memory_gib; }

bool predicted_to_fit(const MemoryPrediction& p, double capacity_gib, double headroom, double sigmas) {
  return p.memory_gib + sigmas * p.sigma_gib <= headroom * capacity_gib;
}

std::string prediction_prune_reason(const MemoryPrediction& p, double capacity_gib, double headroom, double sigmas) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "predicted %.1f GiB > %.0f%% of %.1f GiB", p.memory_gib + sigmas * p.sigma_gib,
                100 * headroom, capacity_gib);
  return buf;
}

}  // namespace partune
