// torchtitan v0.2.2's step line (components/metrics.py, MetricsProcessor.log),
// character for character:
//   step: {step:2}  loss: {loss:8.5f}  grad_norm: {grad_norm:7.4f}  memory: {gib:5.2f}GiB({pct:.2f}%)  tps:
//   {round(tps):,}  tflops: {tflops:,.2f}  mfu: {mfu:.2f}%
// with torchtitan's ANSI colours before each field when `color` is set. No
// LibTorch here.
#pragma once
#include <cstdint>
#include <string>

namespace partune::trainer {

struct StepLine {
  int64_t step = 0;
  double loss = 0;
  double grad_norm = 0;
  double memory_gib = 0;  // peak reserved since the last log
  double memory_pct = 0;  // of the device's memory (CPU: of the stated budget)
  double tps = 0;         // tokens / s / (cp * tp * pp)
  double tflops = 0;      // flops_per_token * tps / 1e12
  double mfu = 0;         // 100 * flops_per_token * tps / peak
};

std::string format_step_line(const StepLine& s, bool color);

// Python format-spec equivalents used by the line (exposed for tests):
// f"{v:{width}.{prec}f}" and, with thousands, f"{v:,.{prec}f}"; nan and inf
// print as Python prints them ("nan", "inf", "-inf").
std::string py_fixed(double v, int width, int precision, bool thousands = false);
// f"{round(v):,}": Python's round (halves to even), then thousands separators.
std::string py_round_thousands(double v);

}  // namespace partune::trainer
