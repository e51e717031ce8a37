// The SVG chart writer: escaping, one tagged element per point, nice ticks,
// and every mark inside the plot area whatever the data.
#include "tuner/report/svg_chart.h"

#include <gtest/gtest.h>

#include <regex>

namespace partune::svg {
namespace {

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::vector<std::string> tick_labels(const std::string& svg) {
  const size_t a = svg.find("<g class=\"ticks\""), b = svg.find("</g>", a);
  std::vector<std::string> out;
  static const std::regex re(">([^<]+)</text>");
  const std::string part = svg.substr(a, b - a);
  for (auto it = std::sregex_iterator(part.begin(), part.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

TEST(SvgChart, EscapesTextForHtmlAndAttributes) {
  EXPECT_EQ(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
  Chart c("id\"x", "<title>", 400, 300);
  c.x_axis("memory <GiB>");
  c.y_axis("MFU & (%)");
  c.point(1, 2, {}, "pt-class", "tip <b>", "ab\"cd");
  const std::string svg = c.render();
  EXPECT_EQ(svg.find("<b>"), std::string::npos);
  EXPECT_EQ(svg.find("<title>"), svg.find("<title>tip &lt;b&gt;</title>"));
  EXPECT_NE(svg.find("memory &lt;GiB&gt;"), std::string::npos);
  EXPECT_NE(svg.find("MFU &amp; (%)"), std::string::npos);
  EXPECT_NE(svg.find("data-trial=\"ab&quot;cd\""), std::string::npos);
}

TEST(SvgChart, OneTaggedElementPerPointWhateverItsShape) {
  Chart c("c", "t");
  const std::vector<Shape> shapes = {Shape::Circle, Shape::Square, Shape::Cross, Shape::Diamond};
  for (size_t i = 0; i < 12; ++i)
    c.point(static_cast<double>(i), static_cast<double>(i * i), {"#123456", shapes[i % 4], i % 2 == 0}, "k", "tip",
            "t" + std::to_string(i));
  c.legend("a legend entry", {"#123456", Shape::Line, false});
  const std::string svg = c.render();
  EXPECT_EQ(count_of(svg, "data-trial=\""), 12u);
  EXPECT_EQ(count_of(svg, "class=\"pt k\""), 12u);
  EXPECT_EQ(count_of(svg, "<title>tip</title>"), 12u);
  EXPECT_EQ(count_of(svg, "class=\"legend-mark\""), 1u);  // legend marks are not points
}

TEST(SvgChart, TicksAreRoundNumbersCoveringTheData) {
  Chart c("c", "t");
  c.x_axis("x");
  c.y_axis("y");
  c.point(0.3, 0.31, {}, "", "");
  c.point(9.7, 9.2, {}, "", "");
  const auto labels = tick_labels(c.render());
  // y first (0..10 by 2), then x (0..10 by 2).
  EXPECT_EQ(labels, (std::vector<std::string>{"0", "2", "4", "6", "8", "10", "0", "2", "4", "6", "8", "10"}));

  Chart small("s", "t");
  small.point(0.012, 0.5, {}, "", "");
  small.point(0.018, 0.5, {}, "", "");  // one y value: the range is padded around it
  const auto l2 = tick_labels(small.render());
  EXPECT_NE(std::find(l2.begin(), l2.end(), "0.012"), l2.end());
  EXPECT_NE(std::find(l2.begin(), l2.end(), "0.50"), l2.end());  // padded 0.45..0.55, ticks by 0.02
}

TEST(SvgChart, CategoriesAreLabelledInOrder) {
  Chart c("c", "t");
  c.x_categories("AC", {"none", "selective", "full"});
  c.point(0, 1, {}, "", "");
  c.point(2, 3, {}, "", "");
  const auto labels = tick_labels(c.render());
  ASSERT_GE(labels.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(labels.end() - 3, labels.end()),
            (std::vector<std::string>{"none", "selective", "full"}));
}

// Every mark's centre lies inside the plot frame, reference lines included
// in the range, for data that spans orders of magnitude.
TEST(SvgChart, EveryMarkIsInsideThePlotArea) {
  Chart c("c", "t", 760, 400, 200);
  for (double v : {1e-3, 0.5, 7.0, 123.0, 9876.0}) c.point(v, v * 3, {}, "k", "", "x");
  c.vline(20000, "limit", "#f00");
  c.hline(-5, "floor", "#00f");
  const std::string svg = c.render();
  static const std::regex frame(
      "<rect x=\"([0-9.]+)\" y=\"([0-9.]+)\" width=\"([0-9.]+)\" height=\"([0-9.]+)\" fill=\"none\"");
  std::smatch f;
  ASSERT_TRUE(std::regex_search(svg, f, frame));
  const double x0 = std::stod(f[1]), y0 = std::stod(f[2]), x1 = x0 + std::stod(f[3]), y1 = y0 + std::stod(f[4]);
  static const std::regex circle("cx=\"([-0-9.]+)\" cy=\"([-0-9.]+)\"");
  size_t n = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), circle); it != std::sregex_iterator(); ++it, ++n) {
    const double x = std::stod((*it)[1]), y = std::stod((*it)[2]);
    EXPECT_GE(x, x0);
    EXPECT_LE(x, x1);
    EXPECT_GE(y, y0);
    EXPECT_LE(y, y1);
  }
  EXPECT_EQ(n, 5u);
}

}  // namespace
}  // namespace partune::svg
