// bench_search_sim: the best-so-far curves of guided (the default), grid and
// random on every simulated 8xH200 landscape (sim_landscape.h), against the
// fraction of the grid's wall time, median over seeds; then guided with a
// time budget of 12% of grid's wall time: how much of it was used, and how
// many untried candidates predicted to fit were left. CPU only.
//
//   bench_search_sim [SEEDS=5] [WORK_DIR=/tmp] [LANDSCAPE,...=all] [STRATEGY,...=guided,grid,random]
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>

#include "sim_study.h"
#include "tuner/search/throughput_model.h"

namespace fs = std::filesystem;
using partune::sim::Landscape;
using partune::sim::run_sim;
using partune::sim::SimOptions;
using partune::sim::SimRun;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

// With PARTUNE_SIM_TRACE set: every trial of seed 1, its reason and true
// value, and the sampler's notes, on stderr.
void trace(const SimRun& r, const Landscape& landscape) {
  for (const auto& [id, req] : r.asked) {
    const auto& c = r.candidates_by_id.at(id);
    const auto t = partune::sim::truth(c, landscape);
    std::fprintf(stderr, "  %s %-7s true %.2f%% (%.3f) mem %.0f%% %s | %s\n", id.c_str(),
                 std::string(partune::to_string(req.fidelity)).c_str(), t.mfu, t.mfu / r.best_truth,
                 100 * t.memory_gib / partune::sim::kCapacityGib, partune::layout_key(c).c_str(), req.why.c_str());
    for (const auto& [k, v] : c.axes)
      if (partune::is_memory_axis(k))
        std::fprintf(stderr, "      %s=%s\n", k.c_str(), partune::value_to_string(v).c_str());
  }
  for (const auto& n : r.notes) std::fprintf(stderr, "  note: %s\n", n.c_str());
}

void bench(const Landscape& landscape, int seeds, const fs::path& work, const std::vector<std::string>& strategies) {
  const std::vector<double> fractions = {0.01, 0.02, 0.03, 0.05, 0.08, 0.10, 0.12, 0.20, 0.35, 0.50, 0.75, 1.00};
  std::map<std::string, std::vector<std::vector<double>>> ratios;  // strategy -> fraction -> per seed
  std::map<std::string, std::vector<double>> wall_fraction, final_ratio, launched, oom, hang;
  std::vector<double> budget_used, budget_ratio, budget_left_fit;
  for (int seed = 1; seed <= seeds; ++seed) {
    SimOptions o;
    o.landscape = landscape;
    std::map<std::string, SimRun> runs;
    for (const auto& s : strategies) {
      const fs::path d = work / (landscape.name + s + std::to_string(seed));
      fs::create_directories(d);
      runs[s] = run_sim(PARTUNE_SOURCE_DIR, d.string(), s, static_cast<uint64_t>(seed), o);
      if (std::getenv("PARTUNE_SIM_TRACE") && seed == 1) trace(runs[s], landscape);
    }
    if (!runs.count("grid")) {
      const fs::path d = work / (landscape.name + "grid" + std::to_string(seed));
      fs::create_directories(d);
      runs["grid"] = run_sim(PARTUNE_SOURCE_DIR, d.string(), "grid", static_cast<uint64_t>(seed), o);
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
    SimOptions b = o;
    b.budget_s = 0.12 * grid_wall;
    const fs::path d = work / (landscape.name + "budget" + std::to_string(seed));
    fs::create_directories(d);
    const SimRun r = run_sim(PARTUNE_SOURCE_DIR, d.string(), "guided", static_cast<uint64_t>(seed), b);
    budget_used.push_back(r.wall_s / *b.budget_s);
    budget_ratio.push_back(r.final_ratio);
    budget_left_fit.push_back(static_cast<double>(r.pending_predicted_to_fit));
    std::fprintf(stderr,
                 "%s seed %d: guided %.1f%% of grid, best %.2f%%, %lld trials (%s); budgeted %.0f%% used, %.2f%%, %lld "
                 "left to fit\n",
                 landscape.name.c_str(), seed, 100 * runs["guided"].wall_s / grid_wall,
                 100 * runs["guided"].final_ratio, static_cast<long long>(runs["guided"].counts.launched),
                 runs["guided"].drive.end.c_str(), 100 * r.wall_s / *b.budget_s, 100 * r.final_ratio,
                 static_cast<long long>(r.pending_predicted_to_fit));
  }

  std::printf(
      "### %s\n\nBest so far (true MFU of the best reported config / best healthy true MFU), median over %d seeds\n\n",
      landscape.name.c_str(), seeds);
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
  std::printf("| guided, budget 12%% of grid | %.1f%% of the budget | %.1f%% | | | |\n\n", 100 * median(budget_used),
              100 * median(budget_ratio));
}
}  // namespace

int main(int argc, char** argv) {
  const int seeds = argc > 1 ? std::atoi(argv[1]) : 5;
  const fs::path work = fs::path(argc > 2 ? argv[2] : fs::temp_directory_path().string()) /
                        ("partune-search-sim-" + std::to_string(::getpid()));
  const std::string only = argc > 3 ? argv[3] : "all";
  const std::vector<std::string> strategies = split(argc > 4 ? argv[4] : "guided,grid,random");
  for (const auto& l : partune::sim::landscapes()) {
    const auto names = split(only);
    if (only != "all" && std::find(names.begin(), names.end(), l.name) == names.end()) continue;
    bench(l, seeds, work, strategies);
  }
  fs::remove_all(work);
  return 0;
}
