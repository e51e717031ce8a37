// A small SVG chart writer for the HTML report: one x-y chart with labelled
// axes (units in the label), nice ticks, grid, points, lines, reference
// lines and a legend. No scripts, fonts or external references, so the SVG
// works inline in a mailed HTML file. Plotted trials carry their id
// (data-trial) and a tooltip (<title>), so a reader or a test can find them.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace partune::svg {

// Text escaped for XML / HTML content and attribute values.
std::string escape(const std::string& text);

enum class Shape { Circle, Square, Cross, Diamond, Line };

struct Style {
  std::string color = "#1f77b4";
  Shape shape = Shape::Circle;
  bool hollow = false;
};

class Chart {
 public:
  // `id` becomes the svg element's id; `title` its heading inside the chart.
  // `legend_width`: room right of the plot for the legend.
  Chart(std::string id, std::string title, int width = 760, int height = 400, int legend_width = 200);

  // A linear x axis; the range grows to nice tick values and to fit the data.
  void x_axis(std::string label);
  // A categorical x axis: value i is drawn at category i.
  void x_categories(std::string label, std::vector<std::string> names);
  void y_axis(std::string label);
  // Forces a value into an axis's range (e.g. 0, or a reference line).
  void include_x(double x);
  void include_y(double y);

  // One plotted point; `trial` (if any) becomes data-trial and `css_class` its class.
  void point(double x, double y, const Style& style, const std::string& css_class, const std::string& tooltip,
             const std::string& trial = "");
  // A line through points; `steps`: horizontal then vertical (a best-so-far curve).
  void line(std::vector<std::pair<double, double>> points, const std::string& color, bool dashed = false,
            bool steps = false);
  void hline(double y, const std::string& label, const std::string& color);
  void vline(double x, const std::string& label, const std::string& color);
  void diagonal(const std::string& label, const std::string& color);  // y = x
  void legend(const std::string& label, const Style& style);

  std::string render() const;

 private:
  struct Point {
    double x, y;
    Style style;
    std::string css_class, tooltip, trial;
  };
  struct Line {
    std::vector<std::pair<double, double>> points;
    std::string color;
    bool dashed, steps;
  };
  struct Ref {
    bool vertical;
    double at;
    std::string label, color;
  };
  std::string id_, title_;
  int width_, height_, right_;
  std::string x_label_, y_label_;
  std::vector<std::string> categories_;
  std::optional<double> x_lo_, x_hi_, y_lo_, y_hi_;
  std::vector<Point> points_;
  std::vector<Line> lines_;
  std::vector<Ref> refs_;
  std::optional<std::pair<std::string, std::string>> diagonal_;
  std::vector<std::pair<std::string, Style>> legend_;
};

}  // namespace partune::svg
