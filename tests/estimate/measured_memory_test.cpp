// The memory model against peak memory measured on GPUs (measured_memory.h):
// the issue's accuracy targets, uncalibrated and after three measured trials.
#include "tests/estimate/measured_memory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "tuner/estimate/memory_model.h"
#include "tuner/space/space.h"

namespace partune {
namespace {

using testing::config_of;
using testing::measured_memory;
using testing::MemoryMeasurement;

// A space for the row's hardware: the model reads the world size, the device
// type and the backend from it.
Space space_for(int world, const std::string& backend = "embedded") {
  return load_space_from_string(
      "[study]\nname = \"m\"\n[hardware]\ndevice_type = \"cuda\"\ndevices = " + std::to_string(world) +
          "\n[backend]\nkind = \"" + backend + "\"\n" + (backend == "command" ? "argv = [\"x\"]\n" : "") +
          "[base]\nconfig_file = \"examples/qwen3_30b_a3b.toml\"\n[space]\n"
          "\"training.seq_len\" = [4096]\n",
      std::string(PARTUNE_SOURCE_DIR) + "/space.toml");
}

double relative_error(double predicted, double measured) { return std::abs(predicted / measured - 1); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::vector<MemoryMeasurement> embedded_rows() {
  std::vector<MemoryMeasurement> rows;
  for (const auto& m : measured_memory())
    if (!m.loose && !m.torchtitan) rows.push_back(m);
  return rows;
}

TEST(MeasuredMemory, UncalibratedMeetsTheIssueTargets) {
  std::vector<double> errors;
  for (const auto& m : embedded_rows()) {
    const auto p = make_memory_model(space_for(m.world))->predict(config_of(m));
    ASSERT_TRUE(p.known) << m.label;
    errors.push_back(relative_error(p.memory_gib, m.measured_gib));
    std::printf("%-28s measured %6.2f predicted %6.2f +- %4.2f GiB (%+5.1f%%)\n", m.label.c_str(), m.measured_gib,
                p.memory_gib, p.sigma_gib, 100 * (p.memory_gib / m.measured_gib - 1));
  }
  ASSERT_EQ(errors.size(), 62u);
  // The targets: median 5%, worst 12% (docs/memory-model.md).
  EXPECT_LE(median(errors), 0.05);
  EXPECT_LE(*std::max_element(errors.begin(), errors.end()), 0.12);
  // What the terms reach today on these rows, a guard against regressions.
  EXPECT_LE(median(errors), 0.035);
}

TEST(MeasuredMemory, OlderCodeAndCompiledTorchtitanAreInTheirClass) {
  // Older code, the default allocator's fragmentation at 64k tokens, and
  // compiled torchtitan: within 20%.
  for (const auto& m : measured_memory()) {
    if (!m.loose && !m.torchtitan) continue;
    const auto p = make_memory_model(space_for(m.world))->predict(config_of(m));
    std::printf("%-28s measured %6.2f predicted %6.2f (%+5.1f%%)\n", m.label.c_str(), m.measured_gib, p.memory_gib,
                100 * (p.memory_gib / m.measured_gib - 1));
    EXPECT_LE(relative_error(p.memory_gib, m.measured_gib), 0.20) << m.label << ": " << p.memory_gib;
  }
}

TEST(MeasuredMemory, ThreeMeasuredTrialsBringTheMedianUnderFivePercent) {
  // Per machine (the model belongs to one space: one world size), calibrate
  // on the first three rows in measurement order, then predict every row.
  std::map<int, std::vector<MemoryMeasurement>> by_world;
  for (const auto& m : embedded_rows()) by_world[m.world].push_back(m);
  for (const auto& [world, rows] : by_world) {
    ASSERT_GE(rows.size(), 4u) << "world " << world;
    auto model = make_memory_model(space_for(world));
    const double sigma_before = model->predict(config_of(rows[0])).sigma_gib;
    for (size_t i = 0; i < 3; ++i) model->observe(config_of(rows[i]), rows[i].measured_gib);
    EXPECT_EQ(model->observations(), 3);
    std::vector<double> errors, held_out;
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto p = model->predict(config_of(rows[i]));
      errors.push_back(relative_error(p.memory_gib, rows[i].measured_gib));
      if (i >= 3) held_out.push_back(errors.back());
    }
    EXPECT_LE(median(errors), 0.05) << "world " << world;
    EXPECT_LE(median(held_out), 0.05) << "world " << world;
    EXPECT_LT(model->predict(config_of(rows[0])).sigma_gib, sigma_before) << "world " << world;
  }
}

TEST(MeasuredMemory, AConfigMeasuredOverTheHeadroomIsPredictedNotToFit) {
  // None of the rows went over 90%; at an 85% headroom the 123.1 GiB run
  // (88% of the H200) did, and its neighbours with less memory did not.
  const auto& rows = measured_memory();
  const auto over = std::find_if(rows.begin(), rows.end(), [](const auto& m) { return m.measured_gib == 123.1; });
  ASSERT_NE(over, rows.end());
  auto model = make_memory_model(space_for(1));
  const double headroom = 0.85;
  ASSERT_GT(over->measured_gib, headroom * over->capacity_gib);
  EXPECT_FALSE(predicted_to_fit(model->predict(config_of(*over)), over->capacity_gib, headroom));
  for (const auto& m : rows)
    if (m.world == 1 && !m.torchtitan && m.capacity_gib == over->capacity_gib && &m != &*over)
      model->observe(config_of(m), m.measured_gib);
  EXPECT_FALSE(predicted_to_fit(model->predict(config_of(*over)), over->capacity_gib, headroom));
  EXPECT_NE(prediction_prune_reason(model->predict(config_of(*over)), over->capacity_gib, headroom)
                .find("> 85% of 139.8 GiB"),
            std::string::npos);
}

}  // namespace
}  // namespace partune
