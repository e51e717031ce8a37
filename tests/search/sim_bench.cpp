// bench_search_sim: the best-so-far curve of guided (the default), grid and
// random on the simulated 8xH200 landscape (sim_landscape.h), against the
// fraction of the grid's wall time, median over seeds. CPU only.
//
//   bench_search_sim [SEEDS=5] [WORK_DIR=/tmp]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "sim_study.h"

namespace fs = std::filesystem;
using partune::sim::run_sim;
using partune::sim::SimRun;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
}  // namespace

int main(int argc, char** argv) {
  const int seeds = argc > 1 ? std::atoi(argv[1]) : 5;
  const fs::path work = fs::path(argc > 2 ? argv[2] : fs::temp_directory_path().string()) /
                        ("partune-search-sim-" + std::to_string(::getpid()));
  const std::vector<std::string> strategies = {"guided", "grid", "random"};
  const std::vector<double> fractions = {0.01, 0.02, 0.03, 0.05, 0.08, 0.10, 0.12, 0.20, 0.35, 0.50, 0.75, 1.00};
  std::map<std::string, std::vector<std::vector<double>>> ratios;  // strategy -> fraction -> per seed
  std::map<std::string, std::vector<double>> wall_fraction, final_ratio, launched, oom, hang;
  for (int seed = 1; seed <= seeds; ++seed) {
    std::map<std::string, SimRun> runs;
    for (const auto& s : strategies) {
      const fs::path d = work / (s + std::to_string(seed));
      fs::create_directories(d);
      runs[s] = run_sim(PARTUNE_SOURCE_DIR, d.string(), s, static_cast<uint64_t>(seed));
    }
    const double grid_wall = runs["grid"].wall_s;
    for (const auto& s : strategies) {
      const SimRun& r = runs[s];
      auto& per = ratios[s];
      per.resize(fractions.size());
      for (size_t k = 0; k < fractions.size(); ++k) per[k].push_back(r.ratio_at(fractions[k] * grid_wall));
      wall_fraction[s].push_back(r.wall_s / grid_wall);
      final_ratio[s].push_back(r.final_ratio);
      launched[s].push_back(static_cast<double>(r.counts.launched));
      oom[s].push_back(static_cast<double>(r.counts.oom));
      hang[s].push_back(static_cast<double>(r.counts.hang));
    }
  }
  fs::remove_all(work);

  std::printf("Best so far (true MFU of the best reported config / best healthy true MFU), median over %d seeds\n\n",
              seeds);
  std::printf("| budget (fraction of grid wall time) |");
  for (const auto& s : strategies) std::printf(" %s |", s.c_str());
  std::printf("\n|---|");
  for (size_t k = 0; k < strategies.size(); ++k) std::printf("---|");
  std::printf("\n");
  for (size_t k = 0; k < fractions.size(); ++k) {
    std::printf("| %.0f%% |", 100 * fractions[k]);
    for (const auto& s : strategies) std::printf(" %.1f%% |", 100 * median(ratios[s][k]));
    std::printf("\n");
  }
  std::printf(
      "\n| strategy | wall time (fraction of grid) | best found | trials launched | OOM launched | hangs launched |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const auto& s : strategies)
    std::printf("| %s | %.1f%% | %.1f%% | %.0f | %.0f | %.0f |\n", s.c_str(), 100 * median(wall_fraction[s]),
                100 * median(final_ratio[s]), median(launched[s]), median(oom[s]), median(hang[s]));
  return 0;
}
