#include "trainer/metrics/step_line.h"

#include <cmath>
#include <cstdio>

namespace partune::trainer {

namespace {

// Inserts ',' every three digits of the integer part of a printed number.
std::string group_thousands(const std::string& s) {
  size_t begin = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  size_t end = s.find('.');
  if (end == std::string::npos) end = s.size();
  std::string out = s.substr(0, begin);
  for (size_t i = begin; i < end; ++i) {
    out += s[i];
    size_t left = end - i - 1;
    if (left > 0 && left % 3 == 0) out += ',';
  }
  return out + s.substr(end);
}

std::string pad_left(std::string s, int width) {
  if (static_cast<int>(s.size()) < width) s.insert(0, static_cast<size_t>(width) - s.size(), ' ');
  return s;
}

}  // namespace

std::string py_fixed(double v, int width, int precision, bool thousands) {
  std::string s;
  if (std::isnan(v)) {
    s = "nan";  // Python drops the sign of a nan
  } else if (std::isinf(v)) {
    s = v > 0 ? "inf" : "-inf";
  } else {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", precision, v);
    s = thousands ? group_thousands(buf) : buf;
  }
  return pad_left(std::move(s), width);
}

std::string py_round_thousands(double v) {
  if (!std::isfinite(v)) return py_fixed(v, 0, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", std::nearbyint(v));
  return group_thousands(buf);
}

std::string format_step_line(const StepLine& s, bool color) {
  // torchtitan.tools.utils.Color
  const char* red = color ? "\033[31m" : "";
  const char* green = color ? "\033[32m" : "";
  const char* orange = color ? "\033[38;2;180;60;0m" : "";
  const char* turquoise = color ? "\033[38;2;54;234;195m" : "";
  const char* blue = color ? "\033[34m" : "";
  const char* cyan = color ? "\033[36m" : "";
  const char* magenta = color ? "\033[35m" : "";
  const char* reset = color ? "\033[39m" : "";
  std::string line;
  line += std::string(red) + "step: " + pad_left(std::to_string(s.step), 2) + "  ";
  line += std::string(green) + "loss: " + py_fixed(s.loss, 8, 5) + "  ";
  line += std::string(orange) + "grad_norm: " + py_fixed(s.grad_norm, 7, 4) + "  ";
  line += std::string(turquoise) + "memory: " + py_fixed(s.memory_gib, 5, 2) + "GiB(" + py_fixed(s.memory_pct, 0, 2) +
          "%)  ";
  line += std::string(blue) + "tps: " + py_round_thousands(s.tps) + "  ";
  line += std::string(cyan) + "tflops: " + py_fixed(s.tflops, 0, 2, true) + "  ";
  line += std::string(magenta) + "mfu: " + py_fixed(s.mfu, 0, 2) + "%" + reset;
  return line;
}

}  // namespace partune::trainer
