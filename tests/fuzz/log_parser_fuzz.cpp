// libFuzzer target: the log parser on arbitrary output. Every line is fed as
// an output line and as a metrics-file line; nothing may crash, and what the
// parser keeps must hold its promises: no step row a step check refuses, a
// bounded table, finite summaries.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tuner/parse/log_parser.h"
#include "tuner/parse/step_check.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_finite(const std::optional<double>& v) { check(!v || std::isfinite(*v)); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  partune::TrialLogState out, metrics;
  int default_rank = size % 3 == 0 ? -1 : static_cast<int>(size % 5);
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);

    const partune::ParsedLine p = partune::parse_log_line(line);
    if (p.kind == partune::ParsedLine::Kind::Step) check(!partune::implausible_step(p.step));
    if (p.refused_step) check(p.kind == partune::ParsedLine::Kind::Failure);
    out.feed(line, default_rank);
    metrics.feed_metrics_json(line, "fuzz line");
  }
  for (const partune::TrialLogState* st : {&out, &metrics}) {
    const auto rows = st->steps();
    check(rows.size() <= partune::TrialLogState::kMaxStepRows);
    for (const auto& r : rows) check(!partune::implausible_step(r));
    const partune::TrialMetrics m = st->summarize(1);
    check_finite(m.mfu);
    check_finite(m.tps);
    check_finite(m.tflops);
    check_finite(m.memory_gib);
    check(m.alloc_retries >= 0 && m.oom_errors >= 0);
  }
  return 0;
}
