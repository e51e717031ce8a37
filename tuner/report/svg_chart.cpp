#include "tuner/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace partune::svg {

namespace {

constexpr int kLeft = 78, kTop = 34, kBottom = 54;  // margins: y labels, title, x labels

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// A tick label: as few digits as the step needs.
std::string tick_text(double v, double step) {
  int decimals = 0;
  while (decimals < 6 &&
         std::fabs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6)
    ++decimals;
  if (std::fabs(v) < step * 1e-6) v = 0;
  char buf[48];
  if (std::fabs(v) >= 1e6 && decimals == 0)
    std::snprintf(buf, sizeof buf, "%.3g", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// 1, 2 or 5 times a power of ten, near range / 5.
double nice_step(double range) {
  if (range <= 0) return 1;
  const double raw = range / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

struct Scale {
  double lo, hi, step;
};

Scale nice_scale(std::optional<double> lo, std::optional<double> hi) {
  double a = lo.value_or(0), b = hi.value_or(1);
  if (b - a <= 0) {
    const double pad = a == 0 ? 1 : std::fabs(a) * 0.1;
    a -= pad, b += pad;
  }
  const double step = nice_step(b - a);
  return {std::floor(a / step) * step, std::ceil(b / step) * step, step};
}

std::string marker(double x, double y, const Style& s, const std::string& attrs) {
  const std::string fill = s.hollow ? "fill=\"white\" stroke=\"" + s.color + "\" stroke-width=\"2\""
                                    : "fill=\"" + s.color + "\" stroke=\"white\" stroke-width=\"0.8\"";
  switch (s.shape) {
    case Shape::Square:
      return "<rect " + attrs + " x=\"" + num(x - 5) + "\" y=\"" + num(y - 5) + "\" width=\"10\" height=\"10\" " +
             fill + ">";
    case Shape::Cross:
      return "<path " + attrs + " d=\"M" + num(x - 5) + " " + num(y - 5) + "L" + num(x + 5) + " " + num(y + 5) + "M" +
             num(x - 5) + " " + num(y + 5) + "L" + num(x + 5) + " " + num(y - 5) + "\" stroke=\"" + s.color +
             "\" stroke-width=\"2.5\" fill=\"none\">";
    case Shape::Diamond:
      return "<path " + attrs + " d=\"M" + num(x) + " " + num(y - 6) + "L" + num(x + 6) + " " + num(y) + "L" + num(x) +
             " " + num(y + 6) + "L" + num(x - 6) + " " + num(y) + "Z\" " + fill + ">";
    case Shape::Line:
      return "<path " + attrs + " d=\"M" + num(x - 9) + " " + num(y) + "L" + num(x + 9) + " " + num(y) +
             "\" stroke=\"" + s.color + "\" stroke-width=\"2.5\">";
    case Shape::Circle:
      break;
  }
  return "<circle " + attrs + " cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"5\" " + fill + ">";
}

std::string close_tag(const Style& s) {
  switch (s.shape) {
    case Shape::Square:
      return "</rect>";
    case Shape::Circle:
      return "</circle>";
    default:
      return "</path>";
  }
}

}  // namespace

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Chart::Chart(std::string id, std::string title, int width, int height, int legend_width)
    : id_(std::move(id)), title_(std::move(title)), width_(width), height_(height), right_(legend_width) {}

void Chart::x_axis(std::string label) { x_label_ = std::move(label); }
void Chart::x_categories(std::string label, std::vector<std::string> names) {
  x_label_ = std::move(label);
  categories_ = std::move(names);
}
void Chart::y_axis(std::string label) { y_label_ = std::move(label); }

void Chart::include_x(double x) {
  x_lo_ = x_lo_ ? std::min(*x_lo_, x) : x;
  x_hi_ = x_hi_ ? std::max(*x_hi_, x) : x;
}
void Chart::include_y(double y) {
  y_lo_ = y_lo_ ? std::min(*y_lo_, y) : y;
  y_hi_ = y_hi_ ? std::max(*y_hi_, y) : y;
}

void Chart::point(double x, double y, const Style& style, const std::string& css_class, const std::string& tooltip,
                  const std::string& trial) {
  include_x(x);
  include_y(y);
  points_.push_back({x, y, style, css_class, tooltip, trial});
}

void Chart::line(std::vector<std::pair<double, double>> points, const std::string& color, bool dashed, bool steps) {
  for (const auto& [x, y] : points) include_x(x), include_y(y);
  lines_.push_back({std::move(points), color, dashed, steps});
}

void Chart::hline(double y, const std::string& label, const std::string& color) {
  include_y(y);
  refs_.push_back({false, y, label, color});
}

void Chart::vline(double x, const std::string& label, const std::string& color) {
  include_x(x);
  refs_.push_back({true, x, label, color});
}

void Chart::diagonal(const std::string& label, const std::string& color) { diagonal_ = {{label, color}}; }

void Chart::legend(const std::string& label, const Style& style) { legend_.emplace_back(label, style); }

std::string Chart::render() const {
  const double pw = width_ - kLeft - right_, ph = height_ - kTop - kBottom;
  std::optional<double> xlo = x_lo_, xhi = x_hi_, ylo = y_lo_, yhi = y_hi_;
  if (diagonal_ && xlo && ylo) {  // y = x needs one scale on both axes
    const double lo = std::min(*xlo, *ylo), hi = std::max(*xhi, *yhi);
    xlo = ylo = lo, xhi = yhi = hi;
  }
  const bool categorical = !categories_.empty();
  Scale xs = categorical ? Scale{-0.5, static_cast<double>(categories_.size()) - 0.5, 1} : nice_scale(xlo, xhi);
  Scale ys = nice_scale(ylo, yhi);
  if (diagonal_ && !categorical) xs = ys = nice_scale(std::min(xs.lo, ys.lo), std::max(xs.hi, ys.hi));
  auto X = [&](double x) { return kLeft + (x - xs.lo) / (xs.hi - xs.lo) * pw; };
  auto Y = [&](double y) { return kTop + ph - (y - ys.lo) / (ys.hi - ys.lo) * ph; };

  std::string o;
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" + escape(id_) + "\" class=\"chart\" width=\"" +
       std::to_string(width_) + "\" height=\"" + std::to_string(height_) + "\" viewBox=\"0 0 " +
       std::to_string(width_) + " " + std::to_string(height_) + "\" role=\"img\" aria-label=\"" + escape(title_) +
       "\">\n";
  o += "<rect x=\"0\" y=\"0\" width=\"" + std::to_string(width_) + "\" height=\"" + std::to_string(height_) +
       "\" fill=\"white\"/>\n";
  o += "<text x=\"" + std::to_string(kLeft) + "\" y=\"20\" class=\"chart-title\">" + escape(title_) + "</text>\n";
  // Grid and ticks.
  o += "<g class=\"grid\" stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  for (double v = ys.lo; v <= ys.hi + ys.step * 1e-6; v += ys.step)
    o += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + pw) + "\" y1=\"" + num(Y(v)) + "\" y2=\"" + num(Y(v)) +
         "\"/>\n";
  if (!categorical)
    for (double v = xs.lo; v <= xs.hi + xs.step * 1e-6; v += xs.step)
      o += "<line y1=\"" + num(kTop) + "\" y2=\"" + num(kTop + ph) + "\" x1=\"" + num(X(v)) + "\" x2=\"" + num(X(v)) +
           "\"/>\n";
  o += "</g>\n<g class=\"ticks\" font-size=\"11\" fill=\"#333\">\n";
  for (double v = ys.lo; v <= ys.hi + ys.step * 1e-6; v += ys.step)
    o += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(Y(v) + 4) + "\" text-anchor=\"end\">" +
         escape(tick_text(v, ys.step)) + "</text>\n";
  if (categorical) {
    for (size_t i = 0; i < categories_.size(); ++i)
      o += "<text x=\"" + num(X(static_cast<double>(i))) + "\" y=\"" + num(kTop + ph + 16) +
           "\" text-anchor=\"middle\">" + escape(categories_[i]) + "</text>\n";
  } else {
    for (double v = xs.lo; v <= xs.hi + xs.step * 1e-6; v += xs.step)
      o += "<text x=\"" + num(X(v)) + "\" y=\"" + num(kTop + ph + 16) + "\" text-anchor=\"middle\">" +
           escape(tick_text(v, xs.step)) + "</text>\n";
  }
  o += "</g>\n";
  // Axes and their labels.
  o += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
       "\" fill=\"none\" stroke=\"#555\"/>\n";
  o += "<text class=\"axis-label\" x=\"" + num(kLeft + pw / 2) + "\" y=\"" + num(height_ - 12) +
       "\" text-anchor=\"middle\">" + escape(x_label_) + "</text>\n";
  o += "<text class=\"axis-label\" transform=\"translate(18 " + num(kTop + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + escape(y_label_) + "</text>\n";
  // Reference lines, then lines, then points on top.
  if (diagonal_) {
    const double lo = std::max(xs.lo, ys.lo), hi = std::min(xs.hi, ys.hi);
    o += "<line class=\"diagonal\" x1=\"" + num(X(lo)) + "\" y1=\"" + num(Y(lo)) + "\" x2=\"" + num(X(hi)) +
         "\" y2=\"" + num(Y(hi)) + "\" stroke=\"" + diagonal_->second + "\" stroke-dasharray=\"6 4\"/>\n";
  }
  for (const Ref& r : refs_) {
    const std::string dash = "\" stroke=\"" + r.color + "\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n";
    if (r.vertical) {
      o += "<line class=\"ref\" y1=\"" + num(kTop) + "\" y2=\"" + num(kTop + ph) + "\" x1=\"" + num(X(r.at)) +
           "\" x2=\"" + num(X(r.at)) + dash;
      o += "<text x=\"" + num(X(r.at) - 4) + "\" y=\"" + num(kTop + 14) +
           "\" text-anchor=\"end\" font-size=\"11\" fill=\"" + r.color + "\">" + escape(r.label) + "</text>\n";
    } else {
      o += "<line class=\"ref\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + pw) + "\" y1=\"" + num(Y(r.at)) +
           "\" y2=\"" + num(Y(r.at)) + dash;
      o += "<text x=\"" + num(kLeft + pw - 4) + "\" y=\"" + num(Y(r.at) - 5) +
           "\" text-anchor=\"end\" font-size=\"11\" fill=\"" + r.color + "\">" + escape(r.label) + "</text>\n";
    }
  }
  for (const Line& l : lines_) {
    if (l.points.empty()) continue;
    std::string d;
    for (size_t i = 0; i < l.points.size(); ++i) {
      const auto [x, y] = l.points[i];
      if (i == 0)
        d += "M" + num(X(x)) + " " + num(Y(y));
      else if (l.steps)
        d += "H" + num(X(x)) + "V" + num(Y(y));
      else
        d += "L" + num(X(x)) + " " + num(Y(y));
    }
    o += "<path class=\"series\" d=\"" + d + "\" fill=\"none\" stroke=\"" + l.color + "\" stroke-width=\"2\"" +
         (l.dashed ? " stroke-dasharray=\"5 3\"" : "") + "/>\n";
  }
  for (const Point& p : points_) {
    std::string attrs = "class=\"pt " + escape(p.css_class) + "\"";
    if (!p.trial.empty()) attrs += " data-trial=\"" + escape(p.trial) + "\"";
    o +=
        marker(X(p.x), Y(p.y), p.style, attrs) + "<title>" + escape(p.tooltip) + "</title>" + close_tag(p.style) + "\n";
  }
  // Legend, right of the plot.
  double ly = kTop + 8;
  const double lx = kLeft + pw + 18;
  for (const auto& [label, style] : legend_) {
    o += marker(lx, ly, style, "class=\"legend-mark\"") + close_tag(style) + "\n";
    o += "<text x=\"" + num(lx + 14) + "\" y=\"" + num(ly + 4) + "\" font-size=\"12\">" + escape(label) + "</text>\n";
    ly += 20;
  }
  o += "</svg>\n";
  return o;
}

}  // namespace partune::svg
