#include "tuner/report/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "common/printable.h"

namespace partune::fmt {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string opt_fixed(const std::optional<double>& v, int decimals) { return v ? fixed(*v, decimals) : "-"; }

std::string thousands(double v) {
  std::string digits = fixed(std::fabs(v), 0);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 && digits != "0" ? "-" : "") + out;
}

std::string memory(const std::optional<double>& gib, const std::optional<double>& pct) {
  if (!gib && !pct) return "-";
  std::string out = gib ? fixed(*gib, 2) + "GiB" : "?GiB";
  if (pct) out += "(" + fixed(*pct, 2) + "%)";
  return out;
}

std::string value(const Value& v) {
  if (auto s = std::get_if<std::string>(&v)) return printable(*s);
  if (auto l = std::get_if<StringList>(&v)) {
    std::string out;
    for (const auto& s : *l) out += (out.empty() ? "" : ",") + printable(s);
    return out;
  }
  return value_to_string(v);
}

Table& Table::column(std::string header, bool right_aligned) {
  headers_.push_back(std::move(header));
  right_.push_back(right_aligned);
  return *this;
}

void Table::row(std::vector<std::string> cells) {
  if (cells.size() != headers_.size())
    throw std::logic_error("Table::row: " + std::to_string(cells.size()) + " cells for " +
                           std::to_string(headers_.size()) + " columns");
  // Cells hold values and reasons from trials and files: never raw control bytes.
  for (auto& c : cells) c = printable(c);
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      const bool last = c + 1 == cells.size();
      const std::string pad(width[c] - cells[c].size(), ' ');
      if (c != 0) out += "  ";
      if (right_[c])
        out += pad + cells[c];
      else
        out += last ? cells[c] : cells[c] + pad;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_);
  for (const auto& r : rows_) out += line(r);
  return out;
}

}  // namespace partune::fmt
