// memory_check --space F [--db D] [--calibrate N] [--sigmas S]: a finished
// study's measured peak memory against the memory model's predictions, one
// table (bench/memory_check_report.h). Exit 2 on bad input.
#include <CLI/CLI.hpp>
#include <iostream>

#include "bench/memory_check_report.h"
#include "common/error.h"

int main(int argc, char** argv) {
  using namespace partune;
  CLI::App app{"memory model check: measured peaks of a study against predictions"};
  std::string space_path, db;
  int calibrate = 3;
  double sigmas = 2.0;
  app.add_option("--space", space_path, "search-space file of the study")->required();
  app.add_option("--db", db, "results database (default: the one the space names)");
  app.add_option("--calibrate", calibrate, "measured trials (plan order) the calibrated model observes")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sigmas", sigmas, "margin in standard deviations")->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitBadInput;
  }
  try {
    const Space space = load_space(space_path);
    Store store = Store::open(db.empty() ? space.study.db_path : db, Store::Mode::Existing);
    std::cout << format_memory_check(check_memory(space, store, calibrate, sigmas));
    return kExitOk;
  } catch (const InputError& e) {
    std::cerr << "memory_check: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "memory_check: " << e.what() << "\n";
    return kExitFailure;
  }
}
