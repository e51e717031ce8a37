// Number and table formatting shared by the report and the exporter: numbers
// as torchtitan prints them (tps with thousands separators, memory as
// "71.50GiB(51.17%)"), and plain aligned text tables.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "common/job_config.h"

namespace partune::fmt {

std::string fixed(double v, int decimals);
std::string opt_fixed(const std::optional<double>& v, int decimals);  // "-" when unknown
std::string thousands(double v);                                      // 12345.6 -> "12,346"
std::string memory(const std::optional<double>& gib, const std::optional<double>& pct);
std::string value(const Value& v);  // strings unquoted, lists comma-joined

class Table {
 public:
  Table& column(std::string header, bool right_aligned = false);
  void row(std::vector<std::string> cells);  // one cell per column
  // Columns separated by two spaces; the last column is not padded.
  std::string render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace partune::fmt
