#include "tuner/cli/plan_output.h"

#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include "tuner/estimate/memory_model.h"

namespace partune {

namespace {

struct Predicted {
  MemoryPrediction p;
  std::optional<bool> fits;  // nullopt: capacity unknown
};

struct Predictions {
  std::vector<Predicted> rows;
  std::optional<double> capacity_gib;
};

Predictions predict_all(const Space& space, const PlanResult& plan) {
  Predictions out;
  const std::unique_ptr<MemoryModel> model = make_memory_model(space);
  out.capacity_gib = device_memory_gib(space);
  for (const Candidate& c : plan.candidates) {
    Predicted r{model->predict(c.config), std::nullopt};
    if (out.capacity_gib) r.fits = predicted_to_fit(r.p, *out.capacity_gib, space.prune.memory_headroom);
    out.rows.push_back(r);
  }
  return out;
}

std::string gib(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", v);
  return buf;
}

}  // namespace

nlohmann::json plan_output_json(const Space& space, const PlanResult& plan) {
  nlohmann::json j = plan_to_json(plan);
  const Predictions pred = predict_all(space, plan);
  for (size_t i = 0; i < pred.rows.size(); ++i) {
    const Predicted& r = pred.rows[i];
    j["candidates"][i]["predicted"] = {
        {"memory_gib", r.p.known ? nlohmann::json(r.p.memory_gib) : nlohmann::json(nullptr)},
        {"fits", r.fits ? nlohmann::json(*r.fits) : nlohmann::json(nullptr)}};
  }
  return j;
}

std::string plan_output_table(const Space& space, const PlanResult& plan) {
  const Predictions pred = predict_all(space, plan);
  PlanColumn memory{"predicted", {}}, fits{"fits", {}};
  int64_t fit = 0;
  for (const Predicted& r : pred.rows) {
    memory.cells.push_back(r.p.known ? gib(r.p.memory_gib) : "?");
    fits.cells.push_back(!r.fits ? "?" : *r.fits ? "yes" : "no");
    if (r.fits && *r.fits) ++fit;
  }
  std::vector<std::string> footer;
  char line[256];
  if (pred.capacity_gib) {
    std::snprintf(line, sizeof line, "memory: %lld of %zu candidates predicted to fit under %.0f%% of %s",
                  static_cast<long long>(fit), pred.rows.size(), 100.0 * space.prune.memory_headroom,
                  gib(*pred.capacity_gib).c_str());
  } else {
    std::snprintf(line, sizeof line,
                  "memory: device memory unknown until the first trial; set [hardware] memory_gib to judge fits now");
  }
  footer.push_back(line);
  return plan_to_table(plan, space, {memory, fits}, footer);
}

}  // namespace partune
